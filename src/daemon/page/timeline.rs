//! The 24-hour status timeline, as inline SVG: one bar per stretch of time a connector spent
//! in one status, drawn from its transitions.

use super::html::Html;
use crate::daemon::history::{Transition, WINDOW_SECS};
use crate::verdict::Status;

/// A stretch of time in one status; `None` is before anything was known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment<'a> {
    pub from: i64,
    pub to: i64,
    pub status: Option<Status>,
    pub code: Option<&'a str>,
}

/// The window `[now - 24 h, now]` cut into segments by `history` (oldest first).
pub fn segments(history: &[Transition], now: i64) -> Vec<Segment<'_>> {
    let start = now - WINDOW_SECS;
    let mut out = Vec::with_capacity(history.len() + 1);
    let mut at = start;
    let mut status = None;
    let mut code = None;
    for t in history {
        let t_at = t.at.clamp(start, now);
        if t_at > at {
            out.push(Segment {
                from: at,
                to: t_at,
                status,
                code,
            });
            at = t_at;
        }
        status = Some(t.status);
        code = t.code.as_deref();
    }
    if now > at {
        out.push(Segment {
            from: at,
            to: now,
            status,
            code,
        });
    }
    out
}

pub fn colour(status: Option<Status>) -> &'static str {
    match status {
        Some(Status::Ok) => "#2f9e5b",
        Some(Status::Warning) => "#d6a300",
        Some(Status::Degraded) => "#e07a1f",
        Some(Status::Failing) => "#cf3129",
        None => "#d5d8dc",
    }
}

/// The timeline: `compact` for a row of the list (no labels), or the detail view's, with an
/// hour scale and a tooltip per segment.
pub fn render(h: &mut Html, history: &[Transition], now: i64, compact: bool) {
    // One unit of the view box per minute; the browser scales it to the box's width.
    let minutes = WINDOW_SECS / 60;
    let start = now - WINDOW_SECS;
    if compact {
        h.raw("<svg class=\"tl\" viewBox=\"0 0 1440 10\" preserveAspectRatio=\"none\" role=\"img\" aria-label=\"last 24 hours\">");
    } else {
        // Scaled as a whole, so the hour labels keep their shape.
        h.raw("<svg class=\"tl-big\" viewBox=\"0 0 1440 42\" role=\"img\" aria-label=\"status over the last 24 hours\">");
    }
    let height = if compact { "10" } else { "22" };
    // The narrowest bar drawn, in minutes: about a pixel at the size the page shows, so a
    // stretch shorter than that (a status that began seconds ago) is still seen.
    let narrowest = if compact { 8 } else { 3 };
    for s in segments(history, now) {
        let (x0, x1) = ((s.from - start) / 60, (s.to - start) / 60);
        let w = (x1 - x0).max(narrowest);
        let x = x0.min(minutes - w);
        h.raw("<rect width=\"").text(w).raw("\"");
        h.raw(" x=\"")
            .text(x)
            .raw("\" y=\"0\" height=\"")
            .text(height)
            .raw("\" fill=\"")
            .text(colour(s.status))
            .raw("\">");
        if !compact {
            h.raw("<title>")
                .text(s.status.map_or("unknown", Status::as_str));
            if let Some(code) = s.code {
                h.raw(" ").text(code);
            }
            h.raw(": ")
                .text(super::render::date_time(s.from))
                .raw(" – ")
                .text(super::render::date_time(s.to))
                .raw("</title>");
        }
        h.raw("</rect>");
    }
    if !compact {
        // A tick every 6 hours, labelled with the hour (UTC) it falls on.
        let first_tick = (start / 21_600 + 1) * 21_600;
        let mut tick = first_tick;
        while tick <= now {
            let x = (tick - start) / 60;
            h.raw("<rect x=\"")
                .text(x)
                .raw("\" y=\"22\" width=\"2\" height=\"5\" fill=\"#666\"></rect><text x=\"")
                .text(x)
                .raw("\" y=\"40\" font-size=\"12\" text-anchor=\"middle\" fill=\"#444\">")
                .text(super::render::hour(tick))
                .raw("</text>");
            tick += 21_600;
        }
    }
    h.raw("</svg>");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(at: i64, status: Status) -> Transition {
        Transition {
            at,
            status,
            code: None,
        }
    }

    #[test]
    fn segments_cover_the_window_from_the_transitions() {
        let now = 1_000_000;
        let start = now - WINDOW_SECS;
        assert_eq!(
            segments(&[], now),
            vec![Segment {
                from: start,
                to: now,
                status: None,
                code: None
            }],
            "nothing known: one grey bar"
        );
        let h = [
            t(start - 500, Status::Ok),
            t(now - 3600, Status::Failing),
            t(now - 60, Status::Ok),
        ];
        let s = segments(&h, now);
        let spans: Vec<(i64, i64, Option<Status>)> =
            s.iter().map(|s| (s.from, s.to, s.status)).collect();
        assert_eq!(
            spans,
            vec![
                (start, now - 3600, Some(Status::Ok)),
                (now - 3600, now - 60, Some(Status::Failing)),
                (now - 60, now, Some(Status::Ok)),
            ]
        );
    }
}
