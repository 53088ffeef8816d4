"""Binding a modality tower to the text anchor: pairs and manifests (`pairs`), cached backbone
features (`cache`), loss objects (`losses`) and the trainer that sums them (`trainer`: `bind`,
`bind_manifest`). This package's init imports nothing: import the submodules."""
