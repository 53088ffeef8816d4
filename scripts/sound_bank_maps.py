"""Hand-written caption maps for scripts/make_sound_bank.py (data, not logic).

Keys are base stems (make_sound_bank.base_stem); a value None drops the file on purpose (music,
interface blips, speech, fantasy effects whose name says nothing about how they sound).
Licences are read from each package's /usr/share/doc/PKG/copyright (the paragraph covering the
sound files).
"""

from __future__ import annotations

WES = "/usr/share/games/wesnoth/1.16"
SOURCES: dict[str, list[tuple[str, str]]] = {
    "wesnoth-1.16-data": [(f"{WES}/data/core/sounds", "**/*"), (f"{WES}/sounds", "*")],
    "widelands-data": [("/usr/share/games/widelands/data/sound", "**/*"),
                       ("/usr/share/games/widelands/data/world/critters", "**/*")],
    "supertux-data": [("/usr/share/games/supertux2/sounds", "*")],
    "hedgewars-data": [("/usr/share/games/hedgewars/Data/Sounds", "*")],
    "freeciv-data": [("/usr/share/games/freeciv/stdsounds", "*")],
    "tuxpaint-data": [("/usr/share/tuxpaint/sounds", "*")],
    "gcompris-qt-data": [("/usr/share/gcompris-qt/rcc", "*.rcc")],
}

LICENCES: dict[str, str] = {
    "wesnoth-1.16-data": "GPL-2+",
    "widelands-data": "GPL-2+",
    "supertux-data": "GPL-3+",
    "hedgewars-data": "GFDL-1.3 (Data/Sounds/*; Droplet*.ogg CC-BY-SA-3.0)",
    "freeciv-data": "GPL-2+",
    "tuxpaint-data": "GPL-2+",
    "gcompris-qt-data": "GPL-3+ (Files: *; per-file exceptions in debian/copyright)",
    "fluid-soundfont-gm": "MIT (FluidR3_GM.sf2)",
}

# '<noun>_<verb>' rule: the last word of a stem, as a participle phrase
VERB_ING: dict[str, str] = {
    "bark": "barking", "growl": "growling", "roar": "roaring", "howl": "howling", "hiss": "hissing",
    "canter": "cantering", "gallop": "galloping", "neigh": "neighing", "moo": "mooing", "bleat": "bleating",
    "quack": "quacking", "croak": "croaking", "chirp": "chirping", "tweet": "tweeting", "buzz": "buzzing",
    "hit": "crying out in pain", "die": "dying with a scream", "laugh": "laughing", "shriek": "shrieking",
    "attack": "attacking with a roar", "creak": "creaking", "splash": "splashing", "crash": "crashing",
    "open": "opening", "close": "closing", "ring": "ringing", "fire": "firing", "impact": "hitting the ground",
    "explosion": "exploding", "flapping": "flapping its wings", "charge": "charging", "falling": "falling over",
    "turning": "turning", "pull_net": "pulling in a net", "drop": "dropping",
}

_WES: dict[str, str | None] = {
    "axe": "an axe chopping", "bat_flapping": "a bat flapping its wings", "bat_hit": "a bat squeaking",
    "bite": "an animal biting", "bite_small": "a small animal biting", "bow": "an arrow shot from a bow",
    "bow_miss": "an arrow whooshing past", "cave_in": "rocks collapsing in a cave-in", "claws": "claws slashing",
    "club": "a wooden club striking", "club_miss": "a club swinging through the air",
    "crossbow": "a crossbow firing a bolt", "crossbow_miss": "a crossbow bolt whizzing past",
    "dagger_swish": "a dagger swishing through the air", "dart": "a dart thrown", "explosion": "an explosion",
    "fist": "a punch landing", "flail": "a metal flail striking", "flail_miss": "a flail swinging through the air",
    "fuse": "a fuse burning", "gold": "gold coins clinking", "groan": "a person groaning",
    "gunshot": "a gunshot", "hatchet": "a hatchet chopping", "hatchet_miss": "a hatchet swinging through the air",
    "heal": None, "horse_canter": "a horse cantering", "horse_elf_canter": "a horse cantering",
    "horse_die": "a horse neighing as it dies", "horse_hit": "a horse neighing in pain",
    "human_die": "a man dying with a scream", "human_hit": "a man grunting in pain",
    "human_female_die": "a woman dying with a scream", "human_female_hit": "a woman crying out in pain",
    "human_old_die": "an old man dying with a groan", "human_old_hit": "an old man grunting in pain",
    "knife": "a knife stabbing", "mace": "a mace striking", "mace_miss": "a mace swinging through the air",
    "miss": "a weapon swishing through the air", "net": "a net thrown", "open_chest": "a wooden chest opening",
    "rumble": "a deep rumble", "sling": "a stone thrown from a sling", "sling_miss": "a sling stone whizzing past",
    "spear": "a spear thrust", "spear_miss": "a spear swishing past", "staff": "a wooden staff striking",
    "staff_miss": "a staff swinging through the air", "sword": "a sword clashing",
    "throw": "something thrown through the air", "throwing_knife": "a throwing knife hitting",
    "throwing_knife_miss": "a throwing knife whizzing past", "thunderstick": "a musket firing",
    "thunderstick_miss": "a musket shot", "torch": "a burning torch striking", "torch_miss": "a torch swishing",
    "wolf_growl": "a wolf growling", "wolf_hit": "a wolf yelping in pain", "wolf_die": "a wolf whimpering as it dies",
    "dwarf_laugh": "a dwarf laughing", "witches_laugh": "a witch cackling", "fire": "a fire crackling",
    "water_blast": "a blast of water", "squishy_hit": "a squishy slimy hit", "squishy_strike": "a squishy slimy hit",
    "ugg": "a caveman grunting", "wail": "a ghost wailing", "wail_long": "a ghost wailing", "wail_sml": "a ghost wailing",
    "zombie_attack": "a zombie groaning", "zombie_hit": "a zombie groaning in pain", "tusker_charge": "a boar charging",
    "tusker_die": "a boar squealing as it dies", "tusker_hit": "a boar squealing", "yeti_die": "a yeti roaring as it dies",
    "yeti_hit": "a yeti roaring", "pincers": "crab pincers snapping", "tail": "a tail whipping",
    "ink": "ink squirting", "fanfare_short": "a short trumpet fanfare", "bell": "a bell ringing",
    "timer": "a clock ticking", "gryphon_shriek": "a giant bird shrieking", "gryphon_hit": "a giant bird screeching in pain",
    "gryphon_die": "a giant bird screeching as it dies", "hiss": "a snake hissing", "hiss_big": "a big snake hissing",
    "hiss_hit": "a snake hissing in pain", "hiss_die": "a snake hissing as it dies", "potion": "a potion bubbling",
    "birds": "birds singing outdoors", "campfire": "a campfire crackling", "morning": "birds singing in the morning",
    "night": "crickets chirping at night", "ship": "a wooden ship creaking on the waves", "wardrums": "war drums beating",
    "horn": "a horn blowing a signal", "ogre_hit": "an ogre grunting in pain", "ogre_die": "an ogre dying with a roar",
    "troll_hit": "a troll grunting in pain", "troll_die": "a troll dying with a roar", "orc_hit": "an orc grunting in pain",
    "orc_die": "an orc dying with a scream", "orc_small_hit": "a goblin squealing in pain",
    "orc_small_die": "a goblin dying with a squeal", "goblin_hit": "a goblin squealing in pain",
    "goblin_die": "a goblin dying with a squeal", "dwarf_hit": "a dwarf grunting in pain", "dwarf_die": "a dwarf dying with a groan",
    "elf_hit": "an elf crying out in pain", "drake_hit": "a dragon roaring in pain", "drake_die": "a dragon dying with a roar",
    "mermaid_hit": "a mermaid crying out", "mermaid_die": "a mermaid dying with a cry",
    "mermen_hit": "a merman grunting in pain", "mermen_die": "a merman dying with a groan",
    "skeleton_hit": "bones rattling", "skeleton_die": "a skeleton collapsing in a clatter of bones",
    "skeleton_big_hit": "big bones rattling", "skeleton_big_die": "a skeleton collapsing in a clatter of bones",
    "wose_hit": "a tree creature groaning", "wose_die": "a tree creature falling with a crash",
    "wose_attack": "a tree creature striking", "lightning": "a lightning bolt crackling",
    "arrive": None, "button": None, "chat": None, "chat_friend": None, "chat_highlight": None, "checkbox": None,
    "contract": None, "expand": None, "gamestart": None, "join": None, "leave": None, "receive": None,
    "select_unit": None, "select": None, "slider": None, "bow_puny_fire": None, "melee_fire": None,
    "crossbow_fire": "a crossbow firing a burning bolt", "ghoul_hit": "a ghoul groaning in pain",
}

_WIDE: dict[str, str | None] = {
    "bird": "a bird singing", "boar": "a wild boar grunting", "coyote": "a coyote howling",
    "crickets": "crickets chirping", "frog": "a frog croaking", "moose": "a moose bellowing", "stag": "a stag roaring",
    "wolf": "a wolf howling", "stonecutter": "a stonecutter chiselling stone", "goldspin": "a spinning wheel turning",
    "benchsaw": "a bench saw cutting wood", "sawing": "a hand saw sawing wood", "blackwood": "wood being hardened in a fire",
    "mortar": "grain ground in a mortar", "stonegrind": "stones grinding", "biginn": "cooking in a busy inn kitchen",
    "inn": "cooking in an inn kitchen", "tavern": "cooking in a tavern kitchen", "weaver": "a loom weaving cloth",
    "beerbubble": "beer bubbling as it brews", "meal": "a meal being cooked", "ration": "food being chopped and packed",
    "winebubble": "wine bubbling as it ferments", "donkey": "a donkey braying", "farm_animal": "farm animals",
    "horse": "a horse neighing", "ox": "an ox lowing", "scythe": "a scythe cutting grain", "sheep": "a sheep bleating",
    "fisher_pull_net": "a fisher pulling in a net", "fisher_throw_net": "a fisher throwing a net into water",
    "geologist_hammer": "a hammer tapping rock", "hammering": "a hammer hammering nails", "fizzle": "hot metal fizzling in water",
    "furnace": "a roaring furnace", "goldping": "a hammer ringing on gold", "ironping": "a hammer ringing on iron",
    "mill_turning": "a mill wheel turning", "weaving": "a loom weaving", "falling_tools": "tools falling with a clatter",
    "sawmill": "a sawmill cutting logs", "sharpening": "a blade sharpened on a grindstone", "smith": "a blacksmith hammering on an anvil",
    "toolsmith": "a toolsmith hammering metal", "stonemason": "a stonemason chiselling stone",
    "fast_woodcutting": "an axe chopping a tree fast", "tree_falling": "a tree falling down", "woodcutting": "an axe chopping wood",
    "duck": "a duck quacking", "click": None, "create_construction_site": None, "lobby_chat": None, "lobby_freshmen": None,
    "message": None, "site_occupied": None, "under_attack": None,
}

_TUX: dict[str, str | None] = {
    "brick": "a brick breaking", "coin": "a coin clinking", "cracking": "ice cracking", "door": "a door opening",
    "explosion": "an explosion", "fire": "a fire burning", "firecracker": "a firecracker exploding",
    "fireworks": "fireworks exploding", "fizz": "a fizzing sound", "flame": "a flame whooshing", "gulp": "a gulp of swallowing",
    "hop": None, "icecrash": "ice shattering", "kick": "a kick", "lava": "lava bubbling", "lightning": "lightning striking",
    "phone": "a phone ringing", "rain": "rain falling", "saw": "a saw cutting", "sizzle": "something sizzling",
    "skid": "a skid", "splash": "water splashing", "splat": "a wet splat", "squish": "a squish", "stomp": "a stomp",
    "thud": "a heavy thud", "thunder": "thunder rumbling", "ticking": "a clock ticking", "trampoline": "a trampoline bouncing",
    "waterfall": "a waterfall", "wood": "wood being hit", "yeti_roar": "a yeti roaring", "savebell": "a bell ringing",
    "tree_howling": "wind howling through trees", "crystallo_shatter": "crystal shattering", "grunts": "a creature grunting",
    "dartfire": "a dart fired", "darthit": "a dart hitting", "turnkey": "a key turning in a lock", "locked": "a locked door rattling",
    "pop": "a pop", "shoot": None, "bigjump": None, "coin2": "a coin clinking",
}

_HEDGE: dict[str, str | None] = {
    "bee": "a bee buzzing", "beewater": "a bee falling into water", "blowtorch": "a blowtorch hissing",
    "baseballbat": "a baseball bat hitting", "droplet": "a water droplet falling", "egg": "an egg cracking",
    "explosion": "an explosion", "flamethrower": "a flamethrower roaring", "gun": "a gunshot", "hammer": "a hammer hitting",
    "kiss": "a kiss", "minigun": "a machine gun firing", "mortar": "a mortar firing", "parachute": "a parachute opening",
    "pickhammer": "a pneumatic drill hammering", "plane": "a propeller plane flying", "rcplane": "a toy plane buzzing",
    "rubberduck_drop": "a rubber duck squeaking", "rubberduck_die": "a rubber duck squeaking", "rubberduck_water": "a rubber duck splashing in water",
    "shotgunfire": "a shotgun firing", "shotgunreload": "a shotgun being reloaded", "sniperreload": "a rifle being reloaded",
    "splash": "a splash into water", "steam": "steam hissing", "steps": "footsteps", "whipcrack": "a whip cracking",
    "whistle": "a whistle blown", "shutterclick": "a camera shutter clicking", "drillgun": "a drill whirring",
    "molotov": "a bottle smashing and bursting into flames", "knife_impact": "a knife hitting wood", "ufo": "a flying saucer humming",
    "birdy_lay": "a bird laying an egg", "hell_growl": "a demon growling", "graveimpact": "a gravestone thudding down",
    "ropeshot": "a grappling rope shot", "yoohoo": "a voice calling yoo-hoo", "melonimpact": "a melon smashing",
    "mineimpact": "a metal mine landing", "minetick": "a mine ticking", "homerun": "a bat hitting a home run",
    "tardis": None, "countdown": None, "custom": None, "firepunch_hit": None,
    "airmine_impact": "a mine hitting the ground", "frozen_hog_impact": None,
}

_CIV: dict[str, str | None] = {
    "lrg_can": "a large cannon firing", "lrg_expl": "a large explosion", "med_can": "a cannon firing",
    "mg_bar": "a machine gun burst", "mg_heavy": "a heavy machine gun firing", "mortar": "a mortar firing",
    "sml_expl": "a small explosion", "splash": "a splash into water", "t_hover": "a hovercraft engine humming",
    "tread": "tank treads rolling", "foot": "footsteps marching", "inh2o": "something moving through water",
    "metbrk": "metal breaking", "woodbrk": "wood breaking", "wall": "a wall being built", "illegal": None, "wakeup": None,
}

_TPD: dict[str, str | None] = {
    "bubble": "bubbles popping", "eraser": "an eraser rubbing on paper", "fill": "paint pouring", "giggle": "a child giggling",
    "harp": "a harp glissando", "keyclick": "a keyboard key clicking", "paint": "a paintbrush painting",
    "typewriterbell": "a typewriter bell ringing", "scroll": None, "stamp": "a rubber stamp thumping",
    "save": "a camera shutter clicking", "return": "a typewriter carriage return",
}

_GC: dict[str, str | None] = {
    "owl": "an owl hooting", "pig": "a pig oinking", "chickens": "chickens clucking", "cat": "a cat meowing",
    "horse": "a horse neighing", "cow": "a cow mooing", "dog": "a dog barking", "duck": "a duck quacking",
    "sheep": "a sheep bleating", "tambourine": "a tambourine playing", "snare_drum": "a snare drum playing",
    "harmonica": "a harmonica playing", "violin": "a violin playing", "cello": "a cello playing",
    "accordion": "an accordion playing", "bongo": "bongo drums playing", "electric_guitar": "an electric guitar playing",
    "banjo": "a banjo playing", "triangle": "a triangle ringing", "trumpet": "a trumpet playing", "horn": "a french horn playing",
    "piano": "a piano playing", "cymbal": "a cymbal crashing", "harp": "a harp playing", "timpani": "timpani drums rolling",
    "saxophone": "a saxophone playing", "maracas": "maracas shaking", "clarinet": "a clarinet playing",
    "guitar": "an acoustic guitar playing", "tuba": "a tuba playing", "trombone": "a trombone playing",
    "organ": "an organ playing", "drum_kit": "a drum kit playing", "castanets": "castanets clicking",
    "flute_traversiere": "a flute playing", "xylofon_son": "a xylophone note", "knock": "a knock on a door",
    "start_and_stop_car_engine": "a car engine starting and stopping", "fireballs": "fireballs whooshing",
    "object_falling": "an object falling", "buddhist_gong": "a buddhist gong ringing", "guitar_son": "a guitar note",
    "guitar_melody": "a guitar melody", "factory_noise": "factory machines clanking", "ring": "a phone ringing",
    "door_open": "a door opening", "train_slowing_down": "a train slowing down", "bark": "a dog barking",
    "applauses": "a crowd applauding", "heart_beat": "a heart beating", "frogs_in_pond_during_storm": "frogs croaking in a pond during a storm",
    "rain_in_garden": "rain falling in a garden", "water_fill": "water filling a lock", "door_close": "a door closing",
    "lock": "a lock gate clanking", "drip": "water dripping", "pickaxe": "a pickaxe striking rock", "money": "coins jingling",
    "train": "a train passing", "eraser": "an eraser rubbing on paper", "brush": "a paintbrush brushing",
    "icy_walk": "footsteps on ice", "metal_hit": "metal being struck", "arrow": "an arrow hitting a target",
    "car": "a car driving past", "harbor": "a harbour with boats and seagulls", "helicopter": "a helicopter flying",
    "crash": "a crash", "water": "water splashing", "card_flip": "a playing card flipping", "eat": "someone eating",
    "weird": None, "hits": None, "la_pause": None, "dot": None, "dash": None, "silence": None,
}

MAPS: dict[str, dict[str, str | None]] = {
    "wesnoth-1.16-data": _WES, "widelands-data": _WIDE, "supertux-data": _TUX, "hedgewars-data": _HEDGE,
    "freeciv-data": _CIV, "tuxpaint-data": _TPD, "gcompris-qt-data": _GC,
}

GM_PITCHES = (48, 60, 67, 72)  # C3, C4, G4, C5
_GM_NAMES = (
    "grand piano", "bright piano", "electric grand piano", "honky-tonk piano", "electric piano", "electric piano",
    "harpsichord", "clavinet", "celesta", "glockenspiel", "music box", "vibraphone", "marimba", "xylophone",
    "tubular bells", "dulcimer", "drawbar organ", "percussive organ", "rock organ", "church organ", "reed organ",
    "accordion", "harmonica", "bandoneon", "nylon-string guitar", "steel-string guitar", "jazz guitar",
    "clean electric guitar", "muted electric guitar", "overdriven guitar", "distorted guitar", "guitar harmonics",
    "acoustic bass", "fingered electric bass", "picked electric bass", "fretless bass", "slap bass", "slap bass",
    "synth bass", "synth bass", "violin", "viola", "cello", "double bass", "tremolo strings", "pizzicato strings",
    "harp", "timpani", "string ensemble", "slow string ensemble", "synth strings", "synth strings", "choir singing aah",
    "voices singing ooh", "synth voice", "orchestra hit", "trumpet", "trombone", "tuba", "muted trumpet", "french horn",
    "brass section", "synth brass", "synth brass", "soprano saxophone", "alto saxophone", "tenor saxophone",
    "baritone saxophone", "oboe", "english horn", "bassoon", "clarinet", "piccolo", "flute", "recorder", "pan flute",
    "blown bottle", "shakuhachi flute", "whistle", "ocarina", "square wave synth lead", "sawtooth synth lead",
    "calliope synth lead", "chiff synth lead", "charang synth lead", "synth voice lead", "fifths synth lead",
    "bass and lead synth", "fantasia synth pad", "warm synth pad", "polysynth pad", "choir synth pad", "bowed glass pad",
    "metallic synth pad", "halo synth pad", "sweep synth pad", "rain synth effect", "soundtrack synth effect",
    "crystal synth effect", "atmosphere synth effect", "brightness synth effect", "goblin synth effect",
    "echo drops synth effect", "sci-fi synth effect", "sitar", "banjo", "shamisen", "koto", "kalimba", "bagpipe",
    "fiddle", "shehnai", "tinkle bell", "agogo bells", "steel drums", "woodblock", "taiko drum", "melodic tom drum",
    "synth drum", "reverse cymbal", "guitar fret noise", "breath noise", "seashore", "bird tweet", "telephone ring",
    "helicopter", "applause", "gunshot",
)
_GM_EFFECTS = {120: "guitar strings squeaking under fingers", 121: "a breath blowing", 122: "waves breaking on a seashore",
               123: "a bird tweeting", 124: "a telephone ringing", 125: "a helicopter flying", 126: "a crowd applauding",
               127: "a gunshot", 52: "a choir singing aah", 53: "voices singing ooh"}
GM_PROGRAMS: list[tuple[str, str]] = [
    (name, _GM_EFFECTS.get(i) or f"{'an' if name[0] in 'aeio' else 'a'} {name} playing a note")
    for i, name in enumerate(_GM_NAMES)
]

DRUM_NOTES: dict[int, str] = {
    35: "a kick drum", 36: "a bass drum kick", 37: "a side stick click on a snare", 38: "a snare drum",
    39: "a hand clap", 40: "an electric snare drum", 41: "a low floor tom", 42: "a closed hi-hat", 43: "a high floor tom",
    44: "a pedal hi-hat", 45: "a low tom", 46: "an open hi-hat", 47: "a low-mid tom", 48: "a high-mid tom",
    49: "a crash cymbal", 50: "a high tom", 51: "a ride cymbal", 52: "a chinese cymbal", 53: "a ride bell",
    54: "a tambourine", 55: "a splash cymbal", 56: "a cowbell", 57: "a second crash cymbal", 58: "a vibraslap",
    59: "a second ride cymbal", 60: "a high bongo", 61: "a low bongo", 62: "a muted high conga", 63: "an open high conga",
    64: "a low conga", 65: "a high timbale", 66: "a low timbale", 67: "a high agogo bell", 68: "a low agogo bell",
    69: "a cabasa", 70: "maracas", 71: "a short whistle", 72: "a long whistle", 73: "a short guiro", 74: "a long guiro",
    75: "claves", 76: "a high woodblock", 77: "a low woodblock", 78: "a muted cuica", 79: "an open cuica",
    80: "a muted triangle", 81: "an open triangle",
}
