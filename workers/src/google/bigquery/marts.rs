//! The data marts: `SELECT`s over `tweets` and `tweet_counts`, rebuilt after every load; and the views a chart
//! should read, which give one number per keyword and day (or hour) whatever the keyword's mode.

/// One data mart: a table rebuilt from `tweets` after every load.
#[derive(Debug, Clone)]
pub struct Mart {
    pub name: &'static str,
    pub select: String,
}

/// The marts, as `SELECT`s over `tweets` and `counts` (quoted, fully qualified table names). Keyword marts count a
/// tweet once for each keyword it mentions; authors are distinct non-null usernames. The keyword daily and hourly
/// marts also hold the counted volumes, with `source = 'counted'` (read tweets have `source = 'read'`); a
/// counted row has no authors and no share of the day, since X counts posts per query, not per distinct post.
pub fn marts(tweets: &str, counts: &str) -> Vec<Mart> {
    let per_keyword = format!("{tweets} AS t, UNNEST(t.keywords) AS keyword");
    vec![
        Mart {
            name: "mart_total_tweets",
            select: format!(
                "SELECT COUNT(*) AS tweets, COUNT(DISTINCT username) AS authors, \
                 MIN(local_date) AS first_day, MAX(local_date) AS last_day FROM {tweets}"
            ),
        },
        Mart {
            name: "mart_tweets_per_keyword",
            select: format!(
                "SELECT keyword, COUNT(*) AS tweets, COUNT(DISTINCT t.username) AS authors \
                 FROM {per_keyword} GROUP BY keyword"
            ),
        },
        // The moving average counts days without tweets as 0: the sum over the 7 calendar days ending that day, / 7.
        Mart {
            name: "mart_keyword_daily",
            select: format!(
                "WITH daily AS (SELECT keyword, t.local_date, COUNT(*) AS tweets, \
                 COUNT(DISTINCT t.username) AS authors FROM {per_keyword} GROUP BY keyword, t.local_date), \
                 totals AS (SELECT local_date, COUNT(*) AS day_tweets FROM {tweets} GROUP BY local_date), \
                 counted AS (SELECT keyword, local_date, SUM(tweets) AS tweets FROM {counts} \
                 GROUP BY keyword, local_date) \
                 SELECT d.keyword, d.local_date, d.tweets, d.authors, \
                 SUM(d.tweets) OVER (PARTITION BY d.keyword ORDER BY UNIX_DATE(d.local_date) \
                 RANGE BETWEEN 6 PRECEDING AND CURRENT ROW) / 7.0 AS tweets_7d_avg, \
                 d.tweets / totals.day_tweets AS share_of_day, 'read' AS source \
                 FROM daily AS d JOIN totals ON d.local_date = totals.local_date \
                 UNION ALL \
                 SELECT c.keyword, c.local_date, c.tweets, CAST(NULL AS INT64) AS authors, \
                 SUM(c.tweets) OVER (PARTITION BY c.keyword ORDER BY UNIX_DATE(c.local_date) \
                 RANGE BETWEEN 6 PRECEDING AND CURRENT ROW) / 7.0 AS tweets_7d_avg, \
                 CAST(NULL AS FLOAT64) AS share_of_day, 'counted' AS source FROM counted AS c"
            ),
        },
        Mart {
            name: "mart_keyword_hourly",
            select: format!(
                "SELECT keyword, t.local_date, t.local_hour, COUNT(*) AS tweets, 'read' AS source \
                 FROM {per_keyword} GROUP BY keyword, t.local_date, t.local_hour \
                 UNION ALL \
                 SELECT keyword, local_date, local_hour, SUM(tweets) AS tweets, 'counted' AS source \
                 FROM {counts} GROUP BY keyword, local_date, local_hour"
            ),
        },
        // RANK, not ROW_NUMBER: users tied on the 10th place are all in, with the same rank.
        Mart {
            name: "mart_top_users",
            select: format!(
                "SELECT username, tweets, `rank` FROM (SELECT username, COUNT(*) AS tweets, \
                 RANK() OVER (ORDER BY COUNT(*) DESC) AS `rank` FROM {tweets} \
                 WHERE username IS NOT NULL GROUP BY username) WHERE `rank` <= 10"
            ),
        },
        Mart {
            name: "mart_top_users_per_keyword",
            select: format!(
                "SELECT keyword, username, tweets, `rank` FROM (SELECT keyword, t.username, COUNT(*) AS tweets, \
                 RANK() OVER (PARTITION BY keyword ORDER BY COUNT(*) DESC) AS `rank` FROM {per_keyword} \
                 WHERE t.username IS NOT NULL GROUP BY keyword, t.username) WHERE `rank` <= 10"
            ),
        },
    ]
}

/// The views over the marts that charts read (docs/looker-studio.md): `mart_keyword_daily` and
/// `mart_keyword_hourly` hold a `read` row and a `counted` row for a keyword in `both` mode, so a chart that sums
/// `tweets` without filtering on `source` counts that keyword twice. These keep one row per keyword and day (and
/// hour): X's counted volume when there is one (it is every matching post, not only those read), else the tweets
/// read. `mart` names a mart as SQL (a quoted, fully qualified table name).
pub fn views(mart: impl Fn(&str) -> String) -> Vec<Mart> {
    let one_per = |mart_name: &str, keys: &str, columns: &str| {
        format!(
            "SELECT {columns} FROM (SELECT {columns}, ROW_NUMBER() OVER (PARTITION BY {keys} \
             ORDER BY IF(source = 'counted', 0, 1)) AS pick FROM {}) WHERE pick = 1",
            mart(mart_name)
        )
    };
    vec![
        Mart {
            name: "v_keyword_daily",
            select: one_per(
                "mart_keyword_daily",
                "keyword, local_date",
                "keyword, local_date, tweets, source",
            ),
        },
        Mart {
            name: "v_keyword_hourly",
            select: one_per(
                "mart_keyword_hourly",
                "keyword, local_date, local_hour",
                "keyword, local_date, local_hour, tweets, source",
            ),
        },
    ]
}
