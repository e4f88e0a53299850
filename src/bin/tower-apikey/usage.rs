//! `tower-apikey usage`: a key's requests by outcome, as a table a person reads at a glance,
//! or as the admin API's JSON.

use jiff::{Span, Timestamp};
use tower_apikey::key::KeyId;
use tower_apikey::usage::{Bucket, Counts, Granularity, Outcome, UsageRange};

use crate::args::StoreArgs;
use crate::store::with_manager;
use crate::terminal::{print_line, write_stdout, Failure};

/// The longest bar, in characters.
const BAR: u64 = 40;

pub(crate) fn show(
    store: &StoreArgs,
    id: &KeyId,
    since: Option<Span>,
    granularity: Granularity,
    json: bool,
) -> Result<(), Failure> {
    let range = range(since, granularity, Timestamp::now())?;
    let id = id.clone();
    let buckets = with_manager(
        store,
        None,
        |keys| async move { keys.usage(&id, range).await },
    )?;
    if json {
        let text = serde_json::to_string_pretty(&serde_json::json!({ "buckets": buckets }))
            .map_err(Failure::usage)?;
        return print_line(&text);
    }
    write_stdout(table(&buckets, granularity).as_bytes())
}

/// From `since` ago (or the default range) to the end of the current bucket.
fn range(
    since: Option<Span>,
    granularity: Granularity,
    now: Timestamp,
) -> Result<UsageRange, Failure> {
    let last = UsageRange::last(granularity, now);
    let Some(since) = since else {
        return Ok(last);
    };
    // Days and weeks count as 24 hours and 7 days: these are UTC buckets.
    let from = since
        .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .ok()
        .and_then(|ago| now.checked_sub(ago).ok())
        .ok_or_else(|| Failure::usage("--since is too far back"))?;
    UsageRange::new(from, last.to(), granularity)
        .map_err(|e| Failure::usage(format!("--since: {e}")))
}

/// One row a bucket: when, how many, how many refused, and a bar scaled to the busiest;
/// then each outcome's total.
fn table(buckets: &[Bucket], granularity: Granularity) -> String {
    let busiest = buckets.iter().map(|b| b.counts.total()).max().unwrap_or(0);
    let when = match granularity {
        Granularity::Hour => "HOUR (UTC)",
        Granularity::Day => "DAY (UTC)",
    };
    let mut out = format!(
        "{when:<17} {:>9} {:>9} {:>9}\n",
        "REQUESTS", "VALID", "REFUSED"
    );
    let mut all = Counts::default();
    for bucket in buckets {
        let total = bucket.counts.total();
        let valid = bucket.counts.get(Outcome::Valid);
        let bar = match busiest {
            0 => 0,
            // Any traffic shows: at least one character.
            _ => (total * BAR).div_ceil(busiest),
        };
        let start = bucket.start.strftime(match granularity {
            Granularity::Hour => "%Y-%m-%d %H:00",
            Granularity::Day => "%Y-%m-%d",
        });
        out += &format!(
            "{start:<17} {total:>9} {valid:>9} {:>9}  {}\n",
            total - valid,
            "█".repeat(bar as usize)
        );
        all.merge(&bucket.counts);
    }
    let outcomes: Vec<String> = all
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(outcome, n)| format!("{outcome} {n}"))
        .collect();
    out += &format!(
        "\n{} requests{}{}\n",
        all.total(),
        if outcomes.is_empty() { "" } else { ": " },
        outcomes.join(", ")
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_a_bar_scaled_to_the_busiest_bucket() {
        let at = |t: &str| t.parse::<Timestamp>().unwrap();
        let mut busy = Counts::default();
        busy.add(Outcome::Valid, 38);
        busy.add(Outcome::WrongSecret, 2);
        let mut quiet = Counts::default();
        quiet.add(Outcome::Revoked, 1);
        let text = table(
            &[
                Bucket::new(at("2026-03-01T10:00:00Z"), busy),
                Bucket::new(at("2026-03-01T11:00:00Z"), Counts::default()),
                Bucket::new(at("2026-03-01T12:00:00Z"), quiet),
            ],
            Granularity::Hour,
        );
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].starts_with("2026-03-01 10:00") && lines[1].ends_with(&"█".repeat(40)));
        assert!(!lines[2].contains('█'));
        assert!(lines[3].ends_with(" █"), "any traffic shows: {}", lines[3]);
        assert_eq!(lines[5], "41 requests: valid 38, wrong_secret 2, revoked 1");
    }
}
