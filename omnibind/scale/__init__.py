"""Scale-out: Ray Data ingest across a cluster, data-parallel binding (torch.distributed)."""
