//! `tower-apikey events`: the audit trail, newest first, as a table or as the admin API's
//! JSON.

use jiff::{Span, Timestamp};
use tower_apikey::events::{AuditEntry, AuditQuery, EventKind};
use tower_apikey::key::KeyId;

use crate::args::StoreArgs;
use crate::store::with_manager;
use crate::terminal::{print_line, write_stdout, Failure};

/// What to read: the filters given on the command line.
pub(crate) struct Filters {
    pub(crate) key: Option<KeyId>,
    pub(crate) principal: Option<String>,
    pub(crate) kind: Option<EventKind>,
    pub(crate) actor: Option<String>,
    pub(crate) since: Span,
    pub(crate) limit: usize,
}

pub(crate) fn show(store: &StoreArgs, filters: Filters, json: bool) -> Result<(), Failure> {
    let now = Timestamp::now();
    // Days and weeks count as 24 hours and 7 days.
    let since = filters
        .since
        .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .ok()
        .and_then(|ago| now.checked_sub(ago).ok())
        .ok_or_else(|| Failure::usage("--since is too far back"))?;
    let mut query = AuditQuery::new().since(since).limit(filters.limit);
    query.key_id = filters.key;
    query.principal = filters.principal;
    query.kind = filters.kind;
    query.actor = filters.actor;
    let entries = with_manager(store, None, |keys| async move { keys.events(&query).await })?;
    if json {
        let items: Vec<serde_json::Value> = entries.iter().map(as_json).collect();
        let text = serde_json::to_string_pretty(&items).map_err(Failure::usage)?;
        return print_line(&text);
    }
    write_stdout(table(&entries).as_bytes())
}

/// An entry as the admin API shows it: the event with its `seq`.
fn as_json(entry: &AuditEntry) -> serde_json::Value {
    let mut value = serde_json::to_value(&entry.event).unwrap_or_default();
    if let Some(object) = value.as_object_mut() {
        object.insert("seq".into(), entry.seq.into());
    }
    value
}

/// One row an event: when, what, which key, whose, who did it, and why or where.
fn table(entries: &[AuditEntry]) -> String {
    let row = |at: &str, kind: &str, key: &str, principal: &str, actor: &str, detail: &str| {
        let line = format!("{at:<20} {kind:<19} {key:<18} {principal:<16} {actor:<28} {detail}");
        format!("{}\n", line.trim_end())
    };
    let mut out = row("AT (UTC)", "TYPE", "KEY", "PRINCIPAL", "ACTOR", "DETAIL");
    for entry in entries {
        let event = &entry.event;
        let mut detail: Vec<String> = Vec::new();
        if let Some(reason) = event.reason {
            detail.push(format!("reason {}", reason.as_str()));
        }
        if let Some(location) = &event.location {
            detail.push(format!("at {location}"));
        }
        if let Some(replaces) = &event.replaces {
            detail.push(format!("replaces {replaces}"));
        }
        out += &row(
            &event.at.strftime("%Y-%m-%d %H:%M:%S").to_string(),
            event.kind.as_str(),
            event.key_id.as_str(),
            &printable(&event.principal),
            &printable(event.actor.as_deref().unwrap_or("")),
            &printable(&detail.join(", ")),
        );
    }
    if entries.is_empty() {
        out += "no events\n";
    }
    out
}

/// Text from the store with control characters escaped, so a name or a leak's location
/// cannot move the cursor or rewrite the terminal.
fn printable(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_from_the_store_are_escaped() {
        assert_eq!(printable("ops\x1b[2J\n"), "ops\\u{1b}[2J\\n");
        assert_eq!(printable("admin:ops/k1"), "admin:ops/k1");
    }
}
