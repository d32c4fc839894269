"""The daily transform in DuckDB SQL: the baseline `scripts/bench` runs side by side with the native engine.

Usage: duckdb_transform.py CONFIG_JSON THREADS
CONFIG_JSON is the same text `transform.py` takes ({"keywords", "mode", "language", "dropRetweets", "timeZone",
"runs": [{"date", "raw", "out"}]}). For each run it reads raw/dt=D/*.ndjson.gz with `read_json`, keeps the day's
tweets in the pipeline's language that are not retweets, cleans the text as far as SQL can (lower case, URLs and
HTML entities out, every run of characters that are not letters or digits made one space), classifies by the
keywords' terms (substring or whole word), keeps one copy per tweet id (the smallest username and text, as the
engines do), and writes the curated Parquet and the marts (per keyword per day, per keyword per hour, top 10 users
per keyword) as Parquet, plus counts.json (kept, duplicates, per keyword) for the harness to compare with the native
engine's report.

Not the same cleaning as the engines in corner cases: invisible characters (soft hyphen, zero-width joiner) split a
word here instead of vanishing, and malformed lines are skipped by `ignore_errors` instead of being counted.
"""

import json
import sys
from pathlib import Path

import duckdb


def sql_string(text):
    return "'" + text.replace("'", "''") + "'"


def clean_sql(expr):
    """The cleaning as SQL over the text expression `expr`."""
    lowered = f"lower({expr})"
    no_urls = f"regexp_replace({lowered}, '(https?://|www\\.)\\S*', ' ', 'g')"
    no_entities = f"regexp_replace({no_urls}, '&(amp|lt|gt);', ' ', 'g')"
    return f"trim(regexp_replace({no_entities}, '[^\\pL\\pN]+', ' ', 'g'))"


def clean_term(term):
    """A keyword term cleaned like the text (Python here: the terms are few)."""
    out, gap = [], False
    for c in term.lower():
        if c.isalnum():
            if gap and out:
                out.append(" ")
            gap = False
            out.append(c)
        else:
            gap = True
    return "".join(out)


def classify_sql(keywords, mode):
    """A list expression naming the keywords whose terms occur in `text_clean`."""
    parts = []
    for keyword in keywords:
        terms = [t for t in (clean_term(t) for t in keyword["terms"]) if t]
        if mode == "wholeWord":
            tests = [f"contains(' ' || text_clean || ' ', {sql_string(' ' + t + ' ')})" for t in terms]
        else:
            tests = [f"contains(text_clean, {sql_string(t)})" for t in terms]
        condition = " OR ".join(tests) or "false"
        parts.append(f"CASE WHEN {condition} THEN [{sql_string(keyword['name'])}] ELSE []::VARCHAR[] END")
    return "list_concat(" + ", ".join(parts) + ")" if len(parts) > 1 else (parts[0] if parts else "[]::VARCHAR[]")


def run_day(con, config, run):
    raw, out, date = run["raw"], Path(run["out"]), run["date"]
    out.mkdir(parents=True, exist_ok=True)
    language = config["language"].lower()
    language = "id" if language == "in" else language
    zone = config.get("timeZone", "UTC")
    columns = ("{tweet: 'STRUCT(id VARCHAR, text VARCHAR, created_at VARCHAR, lang VARCHAR, "
               "note_tweet STRUCT(text VARCHAR), referenced_tweets STRUCT(type VARCHAR, id VARCHAR)[])', "
               "author_username: 'VARCHAR'}")
    retweet = ("(coalesce(list_contains(list_transform(tweet.referenced_tweets, lambda r: r.type), 'retweeted'), false) "
               "OR starts_with(coalesce(tweet.note_tweet.text, tweet.text), 'RT @'))")
    drop = f"AND NOT {retweet}" if config.get("dropRetweets", True) else ""
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE candidates AS
        WITH parsed AS (
            SELECT tweet.id AS id,
                   coalesce(tweet.note_tweet.text, tweet.text) AS text,
                   CAST(tweet.created_at AS TIMESTAMPTZ) AS created_at,
                   CASE lower(tweet.lang) WHEN 'in' THEN 'id' ELSE lower(tweet.lang) END AS lang,
                   author_username AS username,
                   tweet AS tweet
            FROM read_json({sql_string(raw + '/*.ndjson.gz')}, format = 'newline_delimited',
                           compression = 'gzip', columns = {columns}, ignore_errors = true)
            WHERE tweet.id IS NOT NULL AND tweet.text IS NOT NULL AND tweet.created_at IS NOT NULL
        ),
        local AS (SELECT *, timezone({sql_string(zone)}, created_at) AS local_ts FROM parsed)
        SELECT id, created_at, CAST(local_ts AS DATE) AS local_date, hour(local_ts) AS local_hour, username, text,
               {clean_sql('text')} AS text_clean, lang
        FROM local
        WHERE CAST(local_ts AS DATE) = DATE {sql_string(date)} AND lang = {sql_string(language)} {drop}
    """)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE curated AS
        SELECT id, created_at, local_date, local_hour, username, text, text_clean, lang,
               {classify_sql(config['keywords'], config.get('mode', 'substring'))} AS keywords
        FROM candidates
        QUALIFY row_number() OVER (PARTITION BY id ORDER BY username NULLS FIRST, text) = 1
    """)
    con.execute(f"COPY curated TO {sql_string(str(out / 'curated.parquet'))} (FORMAT parquet)")
    con.execute("CREATE OR REPLACE TEMP TABLE mentions AS "
                "SELECT unnest(keywords) AS keyword, local_date, local_hour, username FROM curated")
    marts = {
        "keyword_daily": "SELECT keyword, local_date, count(*) AS tweets FROM mentions GROUP BY ALL",
        "keyword_hourly": "SELECT keyword, local_date, local_hour, count(*) AS tweets FROM mentions GROUP BY ALL",
        "top_users": ("SELECT keyword, username, count(*) AS tweets FROM mentions WHERE username IS NOT NULL "
                      "GROUP BY keyword, username QUALIFY row_number() OVER (PARTITION BY keyword ORDER BY count(*) DESC, "
                      "username) <= 10"),
    }
    for name, query in marts.items():
        con.execute(f"COPY ({query}) TO {sql_string(str(out / (name + '.parquet')))} (FORMAT parquet)")
    candidates = con.execute("SELECT count(*) FROM candidates").fetchone()[0]
    kept = con.execute("SELECT count(*) FROM curated").fetchone()[0]
    per_keyword = dict(con.execute("SELECT keyword, count(*) FROM mentions GROUP BY keyword").fetchall())
    counts = {"kept": kept, "duplicates": candidates - kept, "perKeyword": per_keyword}
    (out / "counts.json").write_text(json.dumps(counts, sort_keys=True))


def main(argv):
    if len(argv) != 3:
        print("usage: duckdb_transform.py CONFIG_JSON THREADS", file=sys.stderr)
        return 2
    config = json.loads(argv[1])
    con = duckdb.connect()
    con.execute(f"SET threads = {int(argv[2])}")
    con.execute("SET preserve_insertion_order = false")
    for run in config["runs"]:
        run_day(con, config, run)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
