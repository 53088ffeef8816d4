"""Text in images: an evaluation set built offline from real material, and its scoring.

The OCR view must make a photo of a sign, a poster or a screenshot findable by its words. No set
of captioned text photos ships in a package, so this module builds one, deterministically (seeded)
and cached (never committed):

* "sign" items: captions written for omnibind (`CAPTIONS`, short notices of the kind seen on
  signs, labels, posters) drawn with Debian's fonts (fonts-dejavu-core, and fonts-liberation /
  fonts-freefont-ttf when installed) onto crops of real text-free photographs shipped in Debian
  packages (opencv-doc samples, lomiri-wallpapers-16.04), at 11-44 px, rotated up to 15 degrees,
  on a plate, outlined, or plain at high or low contrast;
* "page" items: screenshots of real documentation, the OpenCV tutorial pages of opencv-doc,
  taken with headless Chromium, or drawn by Pillow as a terminal showing the page's text when
  Chromium is not installed. Their caption is the page title.

`score` embeds every image with and without the words OCR found, folded into the item vector the
way the item pipeline does (normalize(image + w * mean(segment text vectors))), picks w on one half
(split by item key) and reports caption->image recall on the other.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import random
import re
import shutil
import subprocess
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from omnibind.evaluate.datasets import DataMissingError

VERSION = 1  # bump when the builder changes: the cache folder is keyed by it
OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
OPENCV_HTML = Path("/usr/share/doc/opencv-doc/opencv4/html")
BACKGROUNDS = Path("/usr/share/backgrounds")

# Real photographs without text (checked by eye and by the OCR view): the backgrounds of the sign
# items and the text-free check. opencv-doc samples and lomiri-wallpapers-16.04 photographs.
OPENCV_PHOTOS = (
    "aero1.jpg aero3.jpg aloeL.jpg apple.jpg baboon.jpg basketball1.png butterfly.jpg chicky_512.png "
    "fruits.jpg home.jpg leuvenA.jpg orange.jpg squirrel_cls.jpg starry_night.jpg smarties.png "
    "rubberwhale1.png stuff.jpg"
).split()
WALLPAPER_PHOTOS = (
    "Bridge_by_Sander_Klootwijk.jpg Dragonfly_by_Bolly.jpg Picture_0B_by_freespace.jpg "
    "Picture_1A_by_freespace.jpg Wine_by_Jakkub_Mede.jpg aitzgorri_by_Aitzol_Berasategi.jpg "
    "friends_by_Aitzol_Berasategi.jpg greentock_by_Peter_Nerlich.jpg life_by_Aitzol_Berasategi.jpg "
    "picosdeeuropa_by_Aitzol_Berasategi.jpg seeding_by_Clements_Engelhardt.jpg "
    "sunset_by_Aitzol_Berasategi.jpg free_by_Peter_Nerlich.jpg analogpattern_by_Peter_Nerlich.jpg"
).split()

FONTS = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSerif-Bold.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSansNarrow-Regular.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSerifItalic.ttf",
    "/usr/share/fonts/truetype/freefont/FreeMonoBold.ttf",
)

# Written for omnibind: short notices of the kinds found on signs, shop windows, labels and posters.
CAPTIONS = """
Fresh bread baked every morning
Platform four for trains to Edinburgh
Please keep the gate closed at all times
No parking in front of the garage door
Library opening hours Monday to Friday
Free coffee refills for students
Caution wet floor in the main hall
Emergency exit do not block
Bicycle repairs while you wait
Summer sale fifty percent off all shoes
Organic apples from local farms
Closed on Sundays and public holidays
Welcome to the botanical garden
Beware of the dog behind this fence
Lost cat answers to the name Pepper
Guitar lessons for beginners and children
Fishing is not allowed in this lake
Quiet zone please switch off your phone
Museum of natural history second floor
Keep right except to overtake
Maximum load three tonnes on this bridge
Dentist appointments available next week
Hot soup of the day tomato and basil
Vintage records bought and sold here
Swimming pool closed for maintenance
Vegetable market every Saturday morning
Hiking trail to the mountain lake
Danger high voltage keep out
Pizza delivery until midnight
Children must be accompanied by an adult
Tickets for the evening concert sold out
Handmade soap and candles
Toilets and baby changing downstairs
Speed limit thirty in the school zone
Rooms available with sea view
Recycling paper glass and plastic only
Yoga classes on Tuesday evenings
Fresh fish arriving on Thursday
The ferry to the island leaves at noon
Smoke free building since last year
Car wash open seven days a week
Antique furniture restored with care
Watch out for falling rocks
Public meeting about the new school
Warning thin ice on the pond
Apartment for rent two bedrooms
Please ring the bell for service
Bakery closed for summer holidays
Flu vaccinations at the pharmacy
Second hand books three for five euros
Wildlife crossing for the next two miles
Staff only beyond this point
Chess club meets in the community hall
Camping ground with showers and electricity
Ice cream made with real vanilla
Do not feed the ducks bread
Shoe repairs and key cutting
The castle tour starts at ten
Last chance to see the dinosaur exhibition
Cheese shop with over two hundred varieties
Repair cafe bring your broken toaster
Please wear a helmet on the climbing wall
Charging station for electric cars
Photocopies ten cents per page
Honey from our own beehives
Road closed follow the detour signs
Mind the gap between train and platform
Knitting circle every Wednesday afternoon
Thank you for shopping with us
Fire assembly point in the car park
Tomato plants for sale by the gate
Visitors must sign in at reception
Jazz night with live band on Friday
The bus stop has moved across the road
Cold drinks and sandwiches inside
Strawberry picking starts in June
Please leave your umbrella at the door
The observatory opens after sunset
Wheelchair accessible entrance around the corner
Our famous apple pie with cream
Tennis courts reserved for members
Skate park rules no bikes allowed
Wedding dresses and evening gowns
Tax advice and accounting services
Pottery workshop for all ages
Pets welcome on the terrace
Polar bear enclosure feeding at three
Spare parts for tractors and mowers
Dry cleaning ready in two hours
Flood warning stay away from the river
Violin maker and instrument repairs
Breakfast served until eleven
Ski rental helmets and goggles included
Open mic poetry reading tonight
The lighthouse is closed in winter
Garden centre with roses and shrubs
Beach lifeguard on duty until six
Parcel collection point at the back
Chocolate factory tours every hour
Gentle slope suitable for prams
Sunflower maze open this weekend
Reduced price tickets for seniors
Waterfall viewpoint three hundred metres ahead
Buy two loaves get one free
Observation deck on the top floor
Cinema tickets half price on Mondays
Mushroom picking is forbidden here
Spicy noodles and dumplings to take away
Birdwatching hide along the marsh path
Old town walking tour meets at the fountain
Save water take shorter showers
Lemonade fifty cents a glass
Tyre pressure check free of charge
Beekeeping course starts in April
Shelter from lightning in the hut below
Orchestra rehearsal in room twelve
Goat cheese and fresh eggs sold here
Please return trolleys to the shelter
Volcano museum and crater walk
Harbour parking for boat owners only
Piano tuning and restoration
Kites and balloons for the festival
Avalanche risk do not leave the marked slopes
Sailing lessons for kids this summer
""".strip().splitlines()

PALETTE = {"plate": 0.3, "outline": 0.25, "plain-high": 0.3, "plain-low": 0.15}


@dataclass(frozen=True)
class Item:
    key: str  # stable id: the unit of the tuning / held-out split
    image: Path
    caption: str
    kind: str  # "sign" or "page"
    style: str  # how it was drawn: plate, outline, plain-high, plain-low, chromium, terminal
    size: int  # font size in px (0 for chromium screenshots)
    angle: float

    @property
    def half(self) -> str:
        """'tune' or 'test': a fixed hash split by key."""
        return "tune" if hashlib.sha256(self.key.encode()).digest()[0] % 2 == 0 else "test"

    def __iter__(self):  # unpacks as (image_path, caption)
        return iter((self.image, self.caption))


def cache_dir() -> Path:
    base = os.environ.get("OMNIBIND_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "omnibind")
    return Path(base) / "text-images" / f"v{VERSION}"


def photo_paths() -> list[Path]:
    """The real text-free photographs that are installed (opencv-doc, lomiri-wallpapers-16.04)."""
    paths = [OPENCV_DATA / f for f in OPENCV_PHOTOS] + [BACKGROUNDS / f for f in WALLPAPER_PHOTOS]
    found = [p for p in paths if p.exists()]
    if len(found) < 10:
        raise DataMissingError(
            "text-free photographs not found: run `apt-get install opencv-doc lomiri-wallpapers-16.04` "
            "(or scripts/get-eval-data.sh)"
        )
    return found


def fonts() -> list[str]:
    found = [f for f in FONTS if Path(f).exists()]
    if not found:
        raise DataMissingError("no fonts found: run `apt-get install fonts-dejavu-core fonts-liberation fonts-freefont-ttf`")
    return found


def build(out_dir: str | Path | None = None, n: int = 150, seed: int = 0) -> list[Item]:
    """Build (or read from the cache) `n` items: about a quarter documentation pages, the rest signs.

    Deterministic for a given seed and set of installed packages; `out_dir` defaults to
    `cache_dir()`. An `Item` unpacks as (image_path, caption)."""
    out = Path(out_dir) if out_dir is not None else cache_dir()
    manifest = out / f"items-n{n}-s{seed}.json"
    if manifest.exists():
        items = [Item(**{**d, "image": Path(d["image"])}) for d in json.loads(manifest.read_text("utf-8"))]
        if all(it.image.exists() for it in items):
            return items
    out.mkdir(parents=True, exist_ok=True)
    n_pages = min(n // 4, 60)
    n_signs = min(n - n_pages, len(CAPTIONS))
    items = _signs(out, n_signs, seed) + _pages(out, n - n_signs, seed)
    rows = [{**it.__dict__, "image": str(it.image)} for it in items]
    manifest.write_text(json.dumps(rows, indent=1), "utf-8")
    return items


def _signs(out: Path, n: int, seed: int) -> list[Item]:
    rng = random.Random(f"signs-{seed}")
    photos = photo_paths()
    font_list = fonts()
    captions = rng.sample(CAPTIONS, n)
    cache: dict[Path, Image.Image] = {}
    items = []
    for i, caption in enumerate(captions):
        photo = photos[i % len(photos)]
        if photo not in cache:
            image = Image.open(photo).convert("RGB")
            image.thumbnail((1600, 1600))
            cache[photo] = image
        style = rng.choices(list(PALETTE), weights=list(PALETTE.values()))[0]
        size, angle = rng.randint(11, 44), round(rng.uniform(-15, 15), 1) if rng.random() < 0.6 else 0.0
        font = rng.choice(font_list)
        path = out / f"sign-{i:03d}.jpg"
        _draw_sign(rng, cache[photo], caption, font, size, angle, style).save(path, quality=90)
        items.append(Item(f"sign-{i:03d}", path, caption, "sign", style, size, angle))
    return items


SIZES = ((800, 600), (1024, 768), (960, 540), (640, 480), (720, 960), (1200, 800))


def _crop(rng: random.Random, photo: Image.Image) -> Image.Image:
    """A random crop of the photo with one of SIZES' aspect ratios, resized to that size."""
    w, h = rng.choice(SIZES)
    pw, ph = photo.size
    scale = rng.uniform(0.6, 1.0) * min(pw / w, ph / h)
    cw, ch = int(w * scale), int(h * scale)
    x, y = rng.randint(0, pw - cw), rng.randint(0, ph - ch)
    return photo.crop((x, y, x + cw, y + ch)).resize((w, h), Image.Resampling.LANCZOS)


def _wrap(text: str, font: ImageFont.FreeTypeFont, width: float) -> list[str]:
    lines: list[str] = []
    for word in text.split():
        if lines and font.getlength(lines[-1] + " " + word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


def _draw_sign(rng: random.Random, photo: Image.Image, caption: str, font_path: str, size: int,
               angle: float, style: str) -> Image.Image:
    """The caption drawn on a crop of the photo: on a plate, outlined, or plain."""
    image = _crop(rng, photo)
    font = ImageFont.truetype(font_path, size)
    lines = _wrap(caption, font, image.width * rng.uniform(0.45, 0.85))
    gap, pad = size // 4, size // 2
    box_w = int(max(font.getlength(line) for line in lines)) + 2 * pad
    box_h = len(lines) * (size + gap) + 2 * pad
    layer = Image.new("RGBA", (box_w, box_h), (0, 0, 0, 0))
    # where the text goes decides its colours: contrast is measured against that patch
    x = rng.randint(0, max(0, image.width - box_w))
    y = rng.randint(0, max(0, image.height - box_h))
    patch = np.asarray(image.crop((x, y, x + box_w, y + box_h)).convert("L"), dtype=np.float32)
    fill, stroke, plate = _colours(rng, style, float(patch.mean()))
    draw = ImageDraw.Draw(layer)
    if plate is not None:
        draw.rounded_rectangle((0, 0, box_w - 1, box_h - 1), radius=pad, fill=plate)
    for k, line in enumerate(lines):
        draw.text((pad, pad + k * (size + gap)), line, font=font, fill=fill,
                  stroke_width=max(1, size // 12) if stroke else 0, stroke_fill=stroke)
    if angle:
        layer = layer.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
    x = min(x, max(0, image.width - layer.width))
    y = min(y, max(0, image.height - layer.height))
    image.paste(layer, (x, y), layer)
    return image


def _colours(rng: random.Random, style: str, lum: float) -> tuple[tuple, tuple | None, tuple | None]:
    """(text fill, stroke, plate) RGBA colours for a style over a patch of mean luminance `lum`."""
    dark, light = (20, 20, 20, 255), (245, 245, 245, 255)
    if style == "plate":
        plate = rng.choice([(250, 250, 245), (250, 215, 40), (30, 70, 150), (20, 110, 60), (200, 30, 30)])
        text = dark if sum(plate) > 500 else light
        return text, None, plate + (235,)
    if style == "outline":
        return light, dark, None
    if style == "plain-high":
        return (dark if lum > 128 else light), None, None
    # low contrast: about 70 grey levels from the background, tinted
    v = int(lum - 70 if lum > 110 else lum + 70)
    tint = rng.randint(-15, 15)
    return (max(0, min(255, v + tint)), max(0, min(255, v)), max(0, min(255, v - tint)), 255), None, None


def tutorial_pages() -> list[tuple[Path, str]]:
    """(html file, title) of opencv-doc's tutorial pages, one per distinct title, sorted by path."""
    if not OPENCV_HTML.is_dir():
        raise DataMissingError("OpenCV documentation not found: run `apt-get install opencv-doc`")
    pages, seen = [], set()
    for path in sorted(OPENCV_HTML.rglob("tutorial_*.html")):
        if "table_of_content" in path.name:
            continue
        head = path.read_text("utf-8", errors="replace")[:4000]
        m = re.search(r"<title>(?:OpenCV: )?(.*?)</title>", head, re.S)
        title = html.unescape(m.group(1)).strip() if m else ""
        if len(title.split()) >= 2 and title.lower() not in seen:
            seen.add(title.lower())
            pages.append((path, title))
    return pages


def _pages(out: Path, n: int, seed: int) -> list[Item]:
    """Documentation screenshots: half by headless Chromium (when installed), half as a terminal."""
    rng = random.Random(f"pages-{seed}")
    pages = rng.sample(tutorial_pages(), n)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    items = []
    for i, (page, title) in enumerate(pages):
        path = out / f"page-{i:03d}.png"
        if chromium and i % 2 == 0 and _screenshot(chromium, page, path):
            items.append(Item(f"page-{i:03d}", path, title, "page", "chromium", 0, 0.0))
            continue
        size = rng.choice((13, 14, 15, 16))
        _terminal(page, title, size).save(path)
        items.append(Item(f"page-{i:03d}", path, title, "page", "terminal", size, 0.0))
    return items


def _screenshot(chromium: str, page: Path, path: Path) -> bool:
    """A 1024x768 screenshot of a local page; no network, no GPU, no sandbox (we may run as root)."""
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--hide-scrollbars", "--window-size=1024,768", f"--screenshot={path}", page.as_uri()]
    try:
        subprocess.run(cmd, capture_output=True, timeout=90, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return path.exists() and path.stat().st_size > 0


def page_text(page: Path) -> str:
    """The readable text of an HTML page: tags, scripts and styles removed, whitespace folded."""
    raw = page.read_text("utf-8", errors="replace")
    raw = re.sub(r"(?is)<(script|style|head)\b.*?</\1>", " ", raw)
    raw = re.sub(r"(?i)<br\s*/?>|</(p|div|h\d|li|tr|pre)>", "\n", raw)
    text = html.unescape(re.sub(r"<[^>]+>", " ", raw))
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def _terminal(page: Path, title: str, size: int) -> Image.Image:
    """The page's text as a terminal window shows it: monospace, light on dark, 100 columns."""
    font = ImageFont.truetype(fonts_mono(), size)
    cols, rows = 100, int(720 / (size + 4))
    body = [title.upper(), ""] + [w for line in page_text(page).splitlines() if line != title
                                  for w in textwrap.wrap(line, cols) or [""]]
    char_w = font.getlength("M")
    image = Image.new("RGB", (int(cols * char_w) + 24, rows * (size + 4) + 24), (30, 30, 36))
    draw = ImageDraw.Draw(image)
    for k, line in enumerate(body[:rows]):
        draw.text((12, 12 + k * (size + 4)), line, font=font, fill=(220, 220, 210))
    return image


def fonts_mono() -> str:
    return next((f for f in fonts() if "Mono" in f), fonts()[0])


WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)
GROUPINGS = ("auto", "blocks", "lines", "image")


def fold_ocr(image_vecs: np.ndarray, text_means: np.ndarray, w: float) -> np.ndarray:
    """normalize(image + w * mean of the item's OCR segment vectors); items without text keep their vector."""
    fused = image_vecs + w * text_means
    return fused / np.maximum(np.linalg.norm(fused, axis=1, keepdims=True), 1e-12)


def ocr_means(space: Any, lines_per_item: Sequence[list], grouping: str) -> np.ndarray:
    """Per item: the mean text vector of its OCR segments under a grouping (zeros when none)."""
    from omnibind.views.ocr import group_lines

    texts = [[" ".join(ln.text for ln in g) for g in group_lines(lines, grouping)] for lines in lines_per_item]
    flat = [t for ts in texts for t in ts]
    vecs = np.asarray(space.embed(flat)) if flat else np.zeros((0, space.dim), np.float32)
    out, k = np.zeros((len(texts), space.dim), np.float32), 0
    for i, ts in enumerate(texts):
        if ts:
            out[i] = vecs[k:k + len(ts)].mean(axis=0)
            k += len(ts)
    return out


def _recalls(captions: np.ndarray, images: np.ndarray) -> dict[str, float]:
    from omnibind.evaluate.metrics import retrieval_metrics

    m = retrieval_metrics(captions @ images.T)
    return {k: round(m[k], 2) for k in ("R@1", "R@5", "R@10")}


def read_all(view: Any, paths: Sequence[Path], progress: Callable[[int], None] | None = None) -> tuple[list, float]:
    """OCR lines of every image (decoded as ingest decodes it) and the mean seconds per image."""
    import time

    from omnibind.inputs import load_file

    lines, spent = [], 0.0
    for i, path in enumerate(paths):
        payload = load_file(path).payload
        t = time.perf_counter()
        lines.append(view.read(payload, str(path)))
        spent += time.perf_counter() - t
        if progress:
            progress(i)
    return lines, spent / max(1, len(paths))


def score(space: Any, items: Sequence[Item], view: Any = None, weights: Sequence[float] = WEIGHTS,
          tux: bool = True) -> dict[str, Any]:
    """Caption->image recall with and without the OCR view's words folded into the image vectors.

    w (and the grouping of lines into segments) is picked by R@1 on the 'tune' half; the 'test'
    half reports it. With `tux`, the chosen fusion is also applied to the Tux Paint test images
    (caption->image R@10 must not fall by more than a point)."""
    from omnibind.views.ocr import OcrView

    view = view or OcrView()
    paths = [it.image for it in items]
    images = np.asarray(space.embed(paths))
    captions = np.asarray(space.embed([it.caption for it in items]))
    lines, seconds = read_all(view, paths)
    halves = {h: np.array([it.half == h for it in items]) for h in ("tune", "test")}
    table = {}
    for grouping in GROUPINGS:
        means = ocr_means(space, lines, grouping)
        for w in weights:
            fused = fold_ocr(images, means, w)
            table[(grouping, w)] = {h: _recalls(captions[m], fused[m]) for h, m in halves.items()}
    best = max(table, key=lambda k: (table[k]["tune"]["R@1"], -k[1], -GROUPINGS.index(k[0])))
    result = {
        "items": len(items), "tune": int(halves["tune"].sum()), "test": int(halves["test"].sum()),
        "with_text": sum(bool(x) for x in lines), "ocr_seconds_per_image": round(seconds, 3),
        "chosen": {"grouping": best[0], "w": best[1]},
        "without_ocr": table[(best[0], 0.0)], "with_ocr": table[best],
        "by_kind_test": _by_kind(items, images, captions, ocr_means(space, lines, best[0]), best[1]),
        "table": {f"{g} w={w}": v for (g, w), v in table.items()},
    }
    if tux:
        result["tuxpaint"] = score_tuxpaint(space, view, best[0], best[1])
    return result


def _by_kind(items: Sequence[Item], images: np.ndarray, captions: np.ndarray, means: np.ndarray,
             w: float) -> dict[str, Any]:
    """Held-out R@1 by kind of item, ranked within the whole held-out half."""
    from omnibind.evaluate.metrics import retrieval_metrics

    test = np.array([it.half == "test" for it in items])
    fused = fold_ocr(images, means, w)[test]
    sims = captions[test] @ fused.T
    hits = np.argmax(sims, axis=1) == np.arange(len(sims))
    kinds = np.array([it.kind for it in items])[test]
    out = {k: {"n": int((kinds == k).sum()), "R@1": round(100 * float(hits[kinds == k].mean()), 1)}
           for k in sorted(set(kinds))}
    out["all"] = {"n": int(len(hits)), "R@1": round(retrieval_metrics(sims)["R@1"], 2)}
    return out


def score_tuxpaint(space: Any, view: Any, grouping: str, w: float) -> dict[str, Any]:
    """Tux Paint test images, caption->image R@10 with and without the fused OCR words."""
    from omnibind.evaluate.datasets import tuxpaint_images

    stamps = tuxpaint_images("test")
    paths = [s.image for s in stamps]
    images = np.asarray(space.embed(paths))
    captions = np.asarray(space.embed([s.caption for s in stamps]))
    lines, seconds = read_all(view, paths)
    means = ocr_means(space, lines, grouping)
    return {"n": len(stamps), "with_text": sum(bool(x) for x in lines),
            "texts": [" | ".join(ln.text for ln in x) for x in lines if x][:20],
            "without_ocr": _recalls(captions, images), "with_ocr": _recalls(captions, fold_ocr(images, means, w))}


def text_free_check(view: Any = None) -> dict[str, Any]:
    """OCR on the real text-free photographs: which (if any) yield text."""
    from omnibind.views.ocr import OcrView

    view = view or OcrView()
    paths = photo_paths()
    lines, seconds = read_all(view, paths)
    return {"photos": len(paths), "with_text": {str(p): [ln.text for ln in x] for p, x in zip(paths, lines) if x},
            "ocr_seconds_per_image": round(seconds, 3)}
