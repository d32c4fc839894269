"""Cilvest's daily transform on Spark: raw/dt=D/*.ndjson(.gz) -> curated Parquet.

Implements exactly the "Transform semantics" of ARCHITECTURE.md, mirroring the native engine
(workers/src/transform.rs, tweet.rs). The Rust daily job reads this job's Parquet, re-encodes it as
curated/dt=D/part-00000.parquet and does the loads, marts and indexing itself, whichever engine ran.

Usage: transform.py CONFIG_JSON, where CONFIG_JSON (the JSON text itself, not a path) is
  {"keywords": [{"name": ..., "terms": [...]}], "mode": "substring"|"wholeWord", "language": "in",
   "dropRetweets": true, "timeZone": "Asia/Jakarta",
   "runs": [{"date": "YYYY-MM-DD", "raw": "<dir of raw/dt=D>", "out": "<output dir>"}]}
Each run writes <out>/curated/*.parquet (one file) and <out>/counts/part-00000 (the day's counts as JSON).

Known differences from the native engine, all outside realistic tweet text: Python's Unicode database version may
differ from Rust's; "alphabetic" here is the letter categories plus Nl, which misses Unicode's Other_Alphabetic
marks (for example Indic vowel signs, circled letters); a tweet given as a JSON array instead of an object is
rejected here but decoded positionally by serde.
"""

import datetime
import gzip
import json
import re
import sys
import unicodedata
import zoneinfo

# Unicode White_Space, which Rust's char::is_whitespace uses (str.isspace differs, e.g. on U+001C-U+001F).
WHITE_SPACE = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)
# Deleted rather than turned into a space, so a zero-width joiner inside a word does not split it.
INVISIBLE_EXTRA = frozenset("\xad\u200b\u200c\u200d\u2060\ufeff")
URL_STARTS = ("http://", "https://", "www.")
ID_RE = re.compile(r"[0-9]{1,20}")
# What chrono's DateTime<FixedOffset> FromStr accepts for RFC 3339 timestamps.
TIME_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))"
)
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def is_alphanumeric(c):
    """Rust's char::is_alphanumeric: Alphabetic or Numeric (Nd, Nl, No)."""
    if c.isalpha():
        return True
    return unicodedata.category(c) in ("Nd", "Nl", "No")


def is_invisible(c):
    return (unicodedata.category(c) == "Cc" and c not in WHITE_SPACE) or c in INVISIBLE_EXTRA


def replace_urls(text):
    """`(https?://|www\\.)\\S*` replaced by a space, with Unicode White_Space ending a URL."""
    out = []
    rest = text
    while True:
        starts = [i for i in (rest.find(p) for p in URL_STARTS) if i >= 0]
        if not starts:
            break
        start = min(starts)
        out.append(rest[:start])
        out.append(" ")
        end = start
        while end < len(rest) and rest[end] not in WHITE_SPACE:
            end += 1
        rest = rest[end:]
    out.append(rest)
    return "".join(out)


def clean(text):
    lower = replace_urls(text.lower())
    lower = lower.replace("&amp;", " ").replace("&lt;", " ").replace("&gt;", " ")
    out = []
    gap = False
    for c in lower:
        if is_alphanumeric(c):
            if gap and out:
                out.append(" ")
            gap = False
            out.append(c)
        elif not is_invisible(c):
            gap = True
    return "".join(out)


def canonical_language(code):
    code = "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in code)
    return "id" if code == "in" else code


def mentions(mode, text, term):
    if not term:
        return False
    if mode != "wholeWord":
        return term in text
    start = text.find(term)
    while start >= 0:
        end = start + len(term)
        if (start == 0 or text[start - 1] == " ") and (end == len(text) or text[end] == " "):
            return True
        start = text.find(term, start + 1)
    return False


def parse_time(value):
    """Epoch microseconds of an RFC 3339 string (sub-microsecond digits truncated), or None."""
    if not isinstance(value, str):
        return None
    m = TIME_RE.fullmatch(value)
    if not m:
        return None
    try:
        year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
        if m.group(8):
            offset = datetime.timedelta(0)
        else:
            offset = datetime.timedelta(hours=int(m.group(10)), minutes=int(m.group(11)))
            if m.group(9) == "-":
                offset = -offset
        naive = datetime.datetime(year, month, day, hour, minute, second)
    except ValueError:
        return None
    frac = m.group(7) or ""
    micros = int((frac + "000000")[:6])
    utc = naive - offset
    delta = utc - EPOCH.replace(tzinfo=None)
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + micros


def optional_string(obj, key):
    """serde's Option<String>: missing or null is None; another type fails the record."""
    value = obj.get(key)
    if value is None or isinstance(value, str):
        return value
    raise ValueError(key)


def parse_line(line):
    """(tweet fields, author_username) or None when the line is not a tweet (tweet.rs's parse)."""
    try:
        value = json.loads(line.decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(value, dict) and "tweet" in value:
        username = value.get("author_username")
        tweet = value.get("tweet")
    elif isinstance(value, dict):
        username = value.get("author_username")
        tweet = value
    else:
        return None
    if not isinstance(username, str):
        username = None
    if not isinstance(tweet, dict):
        return None
    try:
        tid, text = tweet.get("id"), tweet.get("text")
        if not isinstance(tid, str) or not isinstance(text, str):
            return None
        # A long post: `text` holds its first 280 characters, note_tweet.text all of it (tweet.rs's parse).
        note = tweet.get("note_tweet")
        if note is not None:
            if not isinstance(note, dict) or not isinstance(note.get("text"), str):
                return None
            text = note["text"]
        created = parse_time(tweet.get("created_at"))
        if created is None:
            return None
        lang = optional_string(tweet, "lang")
        optional_string(tweet, "author_id")
        refs = tweet.get("referenced_tweets", [])
        if not isinstance(refs, list):
            return None
        kinds = []
        for ref in refs:
            if not isinstance(ref, dict) or not isinstance(ref.get("type"), str) or not isinstance(ref.get("id"), str):
                return None
            kinds.append(ref["type"])
    except ValueError:
        return None
    if not ID_RE.fullmatch(tid):
        return None
    return (tid, text, created, lang, kinds), username


def _reject_constant(name):
    # serde_json does not accept NaN or Infinity.
    raise ValueError(name)


def lines_of(path, body):
    if path.endswith(".gz"):
        # Multi-member gzip is one valid file: gzip.decompress reads every member.
        body = gzip.decompress(body)
    for line in body.split(b"\n"):
        if line.endswith(b"\r"):
            line = line[:-1]
        yield line


class Rules:
    def __init__(self, config):
        self.keywords = [
            (k["name"], [t for t in (clean(term) for term in k["terms"]) if t]) for k in config["keywords"]
        ]
        self.mode = config.get("mode", "substring")
        self.language = canonical_language(config["language"])
        self.drop_retweets = config.get("dropRetweets", True)
        self.zone = zoneinfo.ZoneInfo(config.get("timeZone", "UTC"))

    def classify(self, text_clean):
        return [name for name, terms in self.keywords if any(mentions(self.mode, text_clean, t) for t in terms)]

    def process(self, date, path, body):
        """Every line of one object as (status, row): status is a count name, row a kept candidate or None."""
        for line in lines_of(path, body):
            if all(b in b" \t\n\x0c\r" for b in line):
                continue
            parsed = parse_line(line)
            if parsed is None:
                yield "rejected", None
                continue
            (tid, text, created, lang, kinds), username = parsed
            local = (EPOCH + datetime.timedelta(microseconds=created)).astimezone(self.zone)
            if local.date().isoformat() != date:
                yield "other_day", None
            elif lang is None or canonical_language(lang) != self.language:
                yield "other_language", None
            elif self.drop_retweets and ("retweeted" in kinds or text.startswith("RT @")):
                yield "retweets", None
            else:
                text_clean = clean(text)
                row = (tid, created, local.date(), local.hour, username, text, text_clean,
                       canonical_language(lang), self.classify(text_clean))
                yield "kept", row


def smaller_copy(a, b):
    """The copy with the smallest (username, text), no username first: independent of reading order."""
    key_a = (a[4] is not None, a[4] or "", a[5])
    key_b = (b[4] is not None, b[4] or "", b[5])
    return b if key_b < key_a else a


def day_files(spark, raw):
    """The day's .ndjson/.ndjson.gz objects (none when the folder does not exist)."""
    jvm = spark._jvm
    path = jvm.org.apache.hadoop.fs.Path(raw)
    fs = path.getFileSystem(spark._jsc.hadoopConfiguration())
    if not fs.exists(path):
        return []
    names = []
    for status in fs.listStatus(path):
        name = status.getPath().toString()
        if status.isFile() and (name.endswith(".ndjson.gz") or name.endswith(".ndjson")):
            names.append(name)
    return sorted(names)


def run_day(spark, rules, run):
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    sc = spark.sparkContext
    date, out = run["date"], run["out"].rstrip("/")
    files = day_files(spark, run["raw"])
    if files:
        objects = sc.binaryFiles(",".join(files))
    else:
        objects = sc.emptyRDD()
    records = objects.flatMap(lambda pb: rules.process(date, pb[0], pb[1])).cache()
    status_counts = dict(records.map(lambda r: (r[0], 1)).reduceByKey(lambda a, b: a + b).collect())
    kept = records.filter(lambda r: r[0] == "kept").map(lambda r: (r[1][0], r[1])).reduceByKey(smaller_copy).values()
    schema = T.StructType([
        T.StructField("id", T.StringType(), False),
        T.StructField("created_micros", T.LongType(), False),
        T.StructField("local_date", T.DateType(), False),
        T.StructField("local_hour", T.LongType(), False),
        T.StructField("username", T.StringType(), True),
        T.StructField("text", T.StringType(), False),
        T.StructField("text_clean", T.StringType(), False),
        T.StructField("lang", T.StringType(), False),
        T.StructField("keywords", T.ArrayType(T.StringType(), False), False),
    ])
    frame = spark.createDataFrame(kept, schema).cache()
    curated = frame.select(
        "id",
        # The SQL function, not F.timestamp_micros: that wrapper is Spark 3.5+, Dataproc images 2.0/2.1 are older.
        F.expr("timestamp_micros(created_micros)").alias("created_at"),
        "local_date",
        "local_hour",
        "username",
        "text",
        "text_clean",
        "lang",
        "keywords",
    )
    curated.coalesce(1).write.mode("overwrite").parquet(out + "/curated")

    candidates = status_counts.get("kept", 0)
    kept_count = frame.count()
    per_keyword = {name: 0 for name, _ in rules.keywords}
    unmatched = 0
    for keywords, n in frame.select("keywords").rdd.map(lambda r: (tuple(r[0]), 1)).reduceByKey(lambda a, b: a + b).collect():
        if not keywords:
            unmatched += n
        for name in keywords:
            per_keyword[name] = per_keyword.get(name, 0) + n
    counts = {
        "tweetsIn": sum(n for k, n in status_counts.items() if k != "rejected"),
        "rejected": status_counts.get("rejected", 0),
        "otherDay": status_counts.get("other_day", 0),
        "otherLanguage": status_counts.get("other_language", 0),
        "retweets": status_counts.get("retweets", 0),
        "duplicates": candidates - kept_count,
        "kept": kept_count,
        "unmatched": unmatched,
        "perKeyword": per_keyword,
    }
    sc.parallelize([json.dumps(counts, sort_keys=True)], 1).saveAsTextFile(out + "/counts")
    records.unpersist()
    frame.unpersist()


def main(argv):
    if len(argv) != 2:
        print("usage: transform.py CONFIG_JSON", file=sys.stderr)
        return 2
    config = json.loads(argv[1])
    rules = Rules(config)
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.appName("cilvest-transform")
        # The curated schema's created_at is TIMESTAMP(MICROS, UTC), not Spark's default INT96.
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    try:
        for run in config["runs"]:
            # A run may override the rules (the parity test runs two pipelines' days in one Spark start-up).
            run_rules = Rules({**config, **run["rules"]}) if "rules" in run else rules
            run_day(spark, run_rules, run)
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
