"""Pages of French text for the OCR tests and bench (issue 17): sentences, rendering, scoring.

A helper module, not a test file. The end-to-end tests of examples/vocabulary-junior and
bench/ocr.sh render the same pages from the same sentences, so their numbers compare.

- SENTENCES: French sentences in the style of children's books (accents, elisions l'/qu'/j'/d',
  hyphenated words, capitals, punctuation, a few numbers).
- render_page(lines, ...): black text on white with Debian's DejaVu fonts (package
  fonts-dejavu-core), optionally degraded like a phone photo (rotation in [-5°, +5°], Gaussian
  blur of 0.9 px, Gaussian noise of sigma 12 grey levels), deterministic from the seed; returns
  PNG or JPEG bytes.
- word_accuracy(expected_text, words): share of the expected words found, in order, among the
  words read (difflib alignment on normalised words).
- page_sets(): the deterministic pages the tests and the bench use: 10 pages of 4 sentences,
  each sentence cut into lines of at most 32 characters (short lines in large type, as in a
  children's book; long lines turned by 5° overlap the next one and Tesseract's page layout
  then splits them into columns).

Measured with the Tesseract CLI (5.3.0, Debian's fra.traineddata, `--psm 3`,
OMP_THREAD_LIMIT=1) on page_sets() at the defaults (DejaVuSans 34 px, seed = page index), word
accuracy, case-sensitive: clean 99.7% (317/318 words; PNG or JPEG), degraded 94.7% (other seeds:
93.4-95.0%); DejaVuSerif: 99.7% and 97.8%. The misses are mostly case (« Vois », « Saute ») and
« Il » read as « 1 ».

Needs Pillow (tests/requirements.txt) and numpy for the noise.
"""

from __future__ import annotations

import difflib
import io
import random
import textwrap
import unicodedata
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
FONTS = {
    "sans": FONT_DIR / "DejaVuSans.ttf",
    "serif": FONT_DIR / "DejaVuSerif.ttf",
}

# Degradation strength (see render_page). Kept visible on purpose: the judged bar is measured on
# pages that look like a phone photo of a page, not on a barely touched copy.
NOISE_SIGMA = 12.0  # grey levels, Gaussian, per pixel
BLUR_RADIUS = 0.9  # pixels, Gaussian
MAX_ROTATION = 5.0  # degrees, uniform in [-MAX_ROTATION, +MAX_ROTATION]

SENTENCES: list[str] = [
    "Le petit chat dort sur le lit de Léa.",
    "Aujourd'hui, il pleut dans la forêt.",
    "L'écureuil cache ses noisettes sous un arbre.",
    "Ma grand-mère prépare une tarte aux pommes.",
    "Qu'est-ce que tu vois dans le ciel ?",
    "Je vois trois oiseaux et un gros nuage gris.",
    "Le lapin blanc saute par-dessus la barrière.",
    "Tom a perdu son ballon rouge près de l'école.",
    "Peut-être que le loup a peur du noir !",
    "La maîtresse lit une histoire aux enfants.",
    "Il était une fois une princesse très courageuse.",
    "Mon frère a sept ans et ma sœur en a dix.",
    "Les canards nagent sur l'eau froide du lac.",
    "Le soir, papa allume la lampe et ferme les volets.",
    "J'aime les fraises, les cerises et le chocolat.",
    "Où est passé mon doudou ? demande Paul.",
    "La vache mange de l'herbe verte dans le pré.",
    "Le dragon vole au-dessus du château.",
    "Nous allons à la plage pendant les vacances.",
    "Le soleil brille et la mer est bleue.",
    "Maman dit qu'il faut se laver les mains.",
    "Le cheval galope vite dans le champ.",
    "Grand-père raconte des contes d'autrefois.",
    "La souris grignote un morceau de fromage.",
    "Les enfants construisent une cabane dans le jardin.",
    "Il neige : le bonhomme de neige porte un chapeau.",
    "Le chien aboie quand le facteur arrive.",
    "Elle dessine une maison avec une porte jaune.",
    "Les étoiles s'allument une à une dans la nuit.",
    "Le petit ours cherche du miel dans la ruche.",
    "À l'école, on apprend à lire et à compter jusqu'à 100.",
    "Le renard est malin, mais la poule est plus rapide.",
    "Demain, nous irons voir les girafes au zoo.",
    "La tortue marche lentement vers la rivière.",
    "Le bébé pleure parce qu'il a faim.",
    "Les feuilles tombent des arbres en automne.",
    "Le pirate trouve un trésor sur l'île.",
    "Louise joue du piano avec son ami Hugo.",
    "Le train part à 8 heures pour la montagne.",
    "Bonne nuit, dit la lune aux petits lapins.",
]

_PUNCT_EDGES = "«»“”„‟\"'‘’.,;:!?()[]{}…—–-*/\\|<>_~`"
_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "ʼ": "'", "`": "'", "´": "'"})
_DASHES = str.maketrans({"‐": "-", "‑": "-", "‒": "-"})


def _font(font: str, size: int) -> ImageFont.FreeTypeFont:
    path = FONTS.get(font, Path(font))
    if not path.is_file():
        raise FileNotFoundError(f"{path}: install the Debian package fonts-dejavu-core")
    return ImageFont.truetype(str(path), size)


def render_page(
    lines: list[str],
    *,
    font_size: int = 34,
    degrade: bool = False,
    seed: int = 0,
    fmt: str = "PNG",
    font: str = "sans",
    margin: int = 60,
    line_spacing: float = 1.6,
) -> bytes:
    """Render `lines` (one text line each, no wrapping) black on white; return PNG/JPEG bytes.

    font: "sans" (DejaVuSans), "serif" (DejaVuSerif) or a path to a TrueType file.
    degrade=True: a rotation by a random angle in [-MAX_ROTATION, +MAX_ROTATION] degrees (canvas
    expanded, white fill), then a Gaussian blur (BLUR_RADIUS px), then Gaussian noise (sigma
    NOISE_SIGMA grey levels), all drawn from `seed`. The same arguments always give the same
    bytes.
    """
    face = _font(font, font_size)
    step = int(round(font_size * line_spacing))
    widths = [int(face.getlength(line)) for line in lines] or [0]
    width = max(widths) + 2 * margin
    height = max(1, len(lines)) * step + 2 * margin
    img = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        draw.text((margin, margin + i * step), line, font=face, fill=0)

    if degrade:
        rng = random.Random(seed)
        angle = rng.uniform(-MAX_ROTATION, MAX_ROTATION)
        # As a photo of a page: the page turned under the camera, then the lens blur, then the
        # sensor noise.
        img = img.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=255)
        img = img.filter(ImageFilter.GaussianBlur(BLUR_RADIUS))
        noise = np.random.default_rng(seed).normal(0.0, NOISE_SIGMA, (img.height, img.width))
        arr = np.asarray(img, dtype=np.float32) + noise
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))

    out = io.BytesIO()
    fmt = fmt.upper()
    if fmt in ("JPG", "JPEG"):
        img.convert("RGB").save(out, "JPEG", quality=90)
    else:
        img.save(out, "PNG")
    return out.getvalue()


def rotation_angle(seed: int) -> float:
    """The rotation render_page(degrade=True, seed=seed) applies, in degrees."""
    return random.Random(seed).uniform(-MAX_ROTATION, MAX_ROTATION)


def normalize_word(word: str) -> str:
    """NFC, one apostrophe (') and hyphen (-), surrounding punctuation stripped; case kept."""
    w = unicodedata.normalize("NFC", word).translate(_APOSTROPHES).translate(_DASHES)
    return w.strip(_PUNCT_EDGES + " \t\n")


def split_words(text: str) -> list[str]:
    """Whitespace-separated words of `text`, normalised, punctuation-only tokens dropped."""
    return [w for w in (normalize_word(t) for t in text.split()) if w]


def word_accuracy(expected_text: str, words: list[str], *, ignore_case: bool = False) -> float:
    """Share of the words of `expected_text` matched, in order, by `words` (0.0 to 1.0).

    Both sides are normalised with normalize_word (and `words` are split on whitespace too, so
    a whole OCR line or text may be passed as one item); the two word lists are aligned with
    difflib.SequenceMatcher (autojunk off) and the matched blocks are counted. Case matters:
    "Le" read as "le" is a miss, as a capital is part of reading the sentence right
    (ignore_case=True compares casefolded words).
    """
    expected = split_words(expected_text)
    if not expected:
        return 1.0
    got = [w for item in words for w in split_words(item)]
    if ignore_case:
        expected = [w.casefold() for w in expected]
        got = [w.casefold() for w in got]
    matcher = difflib.SequenceMatcher(None, expected, got, autojunk=False)
    matched = sum(block.size for block in matcher.get_matching_blocks())
    return matched / len(expected)


def wrap_sentence(sentence: str, width: int = 32) -> list[str]:
    """`sentence` cut into lines of at most `width` characters, at spaces only (a hyphenated word
    or a word with an apostrophe stays whole), as short lines in large type of a children's book."""
    return textwrap.wrap(sentence, width=width, break_long_words=False, break_on_hyphens=False)


def page_sets(pages: int = 10, per_page: int = 4, width: int | None = 32) -> list[list[str]]:
    """`pages` pages (lists of text lines) of `per_page` sentences each, cycling over SENTENCES.

    Deterministic: page i holds sentences i*per_page ... (mod len(SENTENCES)), each cut into lines
    of at most `width` characters (wrap_sentence; width=None: one sentence a line). With the
    defaults, the 40 sentences once each, in order. page_text(page) is the expected text: the
    same words in the same order as the sentences.
    """
    n = len(SENTENCES)
    out = []
    for p in range(pages):
        lines: list[str] = []
        for k in range(per_page):
            sentence = SENTENCES[(p * per_page + k) % n]
            lines.extend(wrap_sentence(sentence, width) if width else [sentence])
        out.append(lines)
    return out


def page_text(lines: list[str]) -> str:
    """The expected text of a page: its lines joined by newlines."""
    return "\n".join(lines)

