//! The `vantage` field on every JSON log line: where the probes ran from, so that events of
//! several daemons can be told apart in one log pipeline (as metrics are, by their label).
//!
//! Added once, around tracing's JSON formatter, rather than in every event macro: no event
//! can forget it. The value is set when the configuration is loaded; the few lines written
//! before that (a configuration that does not load) have no vantage to name.

use std::fmt;
use std::sync::OnceLock;

use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

static VANTAGE: OnceLock<String> = OnceLock::new();

/// Names this process's vantage on every later line. The first call wins: the registry's
/// metric labels are fixed at start too, and the two must agree.
pub fn set(vantage: &str) {
    let _ = VANTAGE.set(vantage.to_owned());
}

/// The vantage set at start, if any.
pub fn get() -> Option<&'static str> {
    VANTAGE.get().map(String::as_str)
}

/// A JSON event formatter with `"vantage":…` as the first field of each object.
pub struct Tagged<F>(pub F);

impl<S, N, F> FormatEvent<S, N> for Tagged<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let Some(vantage) = get() else {
            return self.0.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        writer.write_str(&tag(&line, vantage))
    }
}

/// `line` (one JSON object) with the vantage added as its first field.
fn tag(line: &str, vantage: &str) -> String {
    let Some(rest) = line.strip_prefix('{') else {
        return line.to_owned();
    };
    let value = serde_json::Value::from(vantage).to_string();
    let comma = if rest.starts_with('}') { "" } else { "," };
    format!("{{\"vantage\":{value}{comma}{rest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_field_goes_first() {
        let line = "{\"timestamp\":\"t\",\"level\":\"INFO\",\"event\":\"probe_result\"}\n";
        let tagged = tag(line, "outside-azure");
        let value: serde_json::Value = serde_json::from_str(&tagged).unwrap();
        assert_eq!(value["vantage"], "outside-azure");
        assert_eq!(value["event"], "probe_result");
        assert!(tagged.ends_with('\n'));
        assert_eq!(tag("{}", "a"), "{\"vantage\":\"a\"}");
        assert_eq!(tag("not json", "a"), "not json");
    }
}
