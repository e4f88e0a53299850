//! The usage chart: requests per hour or day as an SVG bar chart drawn on the server (no
//! chart library, no script), with a text alternative and the numbers in a table.

use jiff::Timestamp;
use maud::{html, Markup};

use crate::usage::{Bucket, Granularity, Outcome, UsageRange};

/// The periods a key's page can show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Period {
    Day,
    Week,
    Quarter,
}

impl Period {
    pub(crate) const ALL: [Period; 3] = [Period::Day, Period::Week, Period::Quarter];

    /// As in the query string; anything else is the default, a day.
    pub(crate) fn parse(text: Option<&str>) -> Self {
        match text {
            Some("7d") => Period::Week,
            Some("90d") => Period::Quarter,
            _ => Period::Day,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Period::Day => "24h",
            Period::Week => "7d",
            Period::Quarter => "90d",
        }
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            Period::Day => "24 h",
            Period::Week => "7 d",
            Period::Quarter => "90 d",
        }
    }

    fn words(self) -> &'static str {
        match self {
            Period::Day => "the last 24 hours, by hour",
            Period::Week => "the last 7 days, by hour",
            Period::Quarter => "the last 90 days, by day",
        }
    }

    /// The buckets it reads, ending with the one `now` is in.
    pub(crate) fn range(self, now: Timestamp) -> UsageRange {
        let (granularity, buckets) = match self {
            Period::Day => (Granularity::Hour, 24),
            Period::Week => (Granularity::Hour, 24 * 7),
            Period::Quarter => (Granularity::Day, 90),
        };
        let to = granularity.bucket_of(now) + granularity.span();
        let from = to - granularity.span() * buckets;
        // At most 90 days: within a range's bounds.
        UsageRange::new(from, to, granularity)
            .unwrap_or_else(|_| UsageRange::last(granularity, now))
    }
}

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 160.0;

/// The chart of `buckets` over `period`.
pub(crate) fn chart(period: Period, buckets: &[Bucket]) -> Markup {
    let valid = |b: &Bucket| b.counts.get(Outcome::Valid);
    let total: u64 = buckets.iter().map(|b| b.counts.total()).sum();
    let accepted: u64 = buckets.iter().map(valid).sum();
    let peak = buckets.iter().map(|b| b.counts.total()).max().unwrap_or(0);
    let busiest = buckets
        .iter()
        .filter(|b| b.counts.total() == peak && peak > 0)
        .map(|b| b.start)
        .next();
    let step = WIDTH / buckets.len().max(1) as f64;
    let scale = |n: u64| {
        if peak == 0 {
            0.0
        } else {
            n as f64 / peak as f64 * HEIGHT
        }
    };
    let summary = match busiest {
        None => format!("No requests over {}.", period.words()),
        Some(at) => format!(
            "{total} requests over {}: {accepted} accepted, {} refused. The busiest {} began {} with {peak}.",
            period.words(),
            total - accepted,
            if matches!(period, Period::Quarter) { "day" } else { "hour" },
            at.strftime("%Y-%m-%d %H:%M UTC"),
        ),
    };
    let first = buckets.first().map(|b| b.start);
    let last = buckets.last().map(|b| b.start);
    html! {
        figure.chart {
            svg viewBox={ "0 0 " (WIDTH) " " (HEIGHT + 20.0) } role="img"
                aria-labelledby="chart-title chart-desc" xmlns="http://www.w3.org/2000/svg" {
                title id="chart-title" { "Requests over " (period.words()) }
                desc id="chart-desc" { (summary) }
                line.axis x1="0" y1=(HEIGHT) x2=(WIDTH) y2=(HEIGHT) {}
                @for (i, bucket) in buckets.iter().enumerate() {
                    @let x = i as f64 * step;
                    @let all = scale(bucket.counts.total());
                    @let ok = scale(valid(bucket));
                    @if all > 0.0 {
                        rect.refused x=(x) y=(HEIGHT - all) width=(step * 0.8) height=(all - ok) {}
                        rect.valid x=(x) y=(HEIGHT - ok) width=(step * 0.8) height=(ok) {}
                    }
                }
                @if let (Some(first), Some(last)) = (first, last) {
                    text x="0" y=(HEIGHT + 15.0) { (first.strftime("%m-%d %H:%M")) }
                    text x=(WIDTH) y=(HEIGHT + 15.0) text-anchor="end" { (last.strftime("%m-%d %H:%M")) }
                }
                @if peak > 0 {
                    text x="4" y="12" { (peak) " max" }
                }
            }
            figcaption {
                (summary)
                span.legend { span.swatch.valid {} " accepted " span.swatch.refused {} " refused" }
            }
        }
        @if total > 0 {
            details {
                summary { "Show the numbers" }
                table {
                    thead { tr { th scope="col" { "From" } th scope="col" { "Accepted" } th scope="col" { "Refused" } } }
                    tbody {
                        @for bucket in buckets.iter().filter(|b| !b.counts.is_empty()) {
                            tr {
                                td { (bucket.start.strftime("%Y-%m-%d %H:%M UTC")) }
                                td { (valid(bucket)) }
                                td { (bucket.counts.total() - valid(bucket)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::Counts;

    #[test]
    fn periods_read_24_168_and_90_buckets_ending_now() {
        let now: Timestamp = "2026-03-01T10:20:00Z".parse().unwrap();
        for (period, n, last) in [
            (Period::Day, 24, "2026-03-01T10:00:00Z"),
            (Period::Week, 168, "2026-03-01T10:00:00Z"),
            (Period::Quarter, 90, "2026-03-01T00:00:00Z"),
        ] {
            let range = period.range(now);
            let buckets: Vec<_> = range.buckets().collect();
            assert_eq!(buckets.len(), n, "{period:?}");
            assert_eq!(buckets.last().unwrap().to_string(), last);
            assert_eq!(Period::parse(Some(period.as_str())), period);
        }
        assert_eq!(Period::parse(Some("1y")), Period::Day);
    }

    #[test]
    fn the_chart_says_in_words_what_it_draws() {
        let now: Timestamp = "2026-03-01T10:20:00Z".parse().unwrap();
        let range = Period::Day.range(now);
        let mut buckets: Vec<Bucket> = range
            .buckets()
            .map(|s| Bucket::new(s, Counts::default()))
            .collect();
        let mut counts = Counts::default();
        counts.add(Outcome::Valid, 7);
        counts.add(Outcome::RateLimited, 3);
        buckets[20].counts = counts;
        let html = chart(Period::Day, &buckets).into_string();
        assert!(html.contains(r#"role="img""#));
        assert!(html.contains("10 requests over the last 24 hours, by hour: 7 accepted, 3 refused. The busiest hour began 2026-03-01 07:00 UTC with 10."), "{html}");
        assert_eq!(html.matches("<rect").count(), 2);
        let empty: Vec<Bucket> = range
            .buckets()
            .map(|s| Bucket::new(s, Counts::default()))
            .collect();
        assert!(chart(Period::Day, &empty)
            .into_string()
            .contains("No requests over the last 24 hours"));
    }
}
