//! Short-video feedback events and the confidence weighting that turns them into implicit
//! feedback.

use serde::{Deserialize, Serialize};

/// What a user did with a video.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// The video played for `watch_ms` of its `duration_ms` (more than the duration on a rewatch).
    View {
        /// How long it played, in milliseconds.
        watch_ms: u64,
        /// The video's length, in milliseconds.
        duration_ms: u64,
    },
    /// The user liked the video.
    Like,
    /// The user shared the video.
    Share,
    /// The user commented on the video.
    Comment,
    /// The user followed the video's creator from this video.
    FollowCreator,
    /// The user swiped the video away.
    Skip,
}

/// One feedback event, as a line of the events JSONL format:
///
/// ```json
/// {"user":"u1","video":"v7","kind":"view","watch_ms":9000,"duration_ms":12000,"timestamp":1700000000000}
/// {"user":"u1","video":"v7","kind":"like","timestamp":1700000001000,"country":"US","creator":"c3"}
/// ```
///
/// `country` (the user's ISO country code) and `creator` (the video's creator) are optional; the
/// first gives a subject's home region for provenance, the second enables per-creator caps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The user's id.
    pub user: String,
    /// The video's id.
    pub video: String,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
    /// When, in milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// The user's country of residence, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// The video's creator, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creator: Option<String>,
}

/// How events become implicit-feedback weights.
///
/// The weight of a (user, video) pair is the sum over its events of:
///
/// | event          | contribution                                                  |
/// |----------------|---------------------------------------------------------------|
/// | view           | `view × min(watch_ms / duration_ms, max_completion)`          |
/// | like           | `like`                                                        |
/// | share          | `share`                                                       |
/// | comment        | `comment`                                                     |
/// | follow creator | `follow`                                                      |
/// | skip           | `skip` (negative: a skip counts against the pair)             |
///
/// A pair whose total is zero or negative is dropped: implicit ALS has no notion of negative
/// preference, so a video that was only skipped is treated as unobserved. ALS then turns a
/// weight `w` into the confidence `c = 1 + alpha × w` (Hu, Koren & Volinsky 2008).
///
/// The defaults make a completed view worth 1, a like 2, a share 3, a comment 1.5, a follow 2 and
/// a skip -1: sharing is the strongest public signal of interest on a short-video platform, and
/// completion is the most plentiful one.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ConfidenceWeights {
    /// Weight of a fully watched view.
    pub view: f32,
    /// Rewatches count, but no more than this many times the duration.
    pub max_completion: f32,
    /// Weight of a like.
    pub like: f32,
    /// Weight of a share.
    pub share: f32,
    /// Weight of a comment.
    pub comment: f32,
    /// Weight of following the creator from this video.
    pub follow: f32,
    /// Weight of a skip (negative).
    pub skip: f32,
}

impl Default for ConfidenceWeights {
    fn default() -> Self {
        ConfidenceWeights {
            view: 1.0,
            max_completion: 2.0,
            like: 2.0,
            share: 3.0,
            comment: 1.5,
            follow: 2.0,
            skip: -1.0,
        }
    }
}

impl ConfidenceWeights {
    /// The contribution of one event to its pair's weight.
    ///
    /// ```
    /// use domicile_recommender::{ConfidenceWeights, EventKind};
    /// let w = ConfidenceWeights::default();
    /// assert_eq!(w.weight(&EventKind::View { watch_ms: 6_000, duration_ms: 12_000 }), 0.5);
    /// assert_eq!(w.weight(&EventKind::View { watch_ms: 60_000, duration_ms: 12_000 }), 2.0);
    /// assert_eq!(w.weight(&EventKind::Share), 3.0);
    /// assert_eq!(w.weight(&EventKind::Skip), -1.0);
    /// ```
    pub fn weight(&self, kind: &EventKind) -> f32 {
        match *kind {
            EventKind::View {
                watch_ms,
                duration_ms,
            } => {
                // A zero-length video cannot have a completion ratio; count it as one full view.
                let ratio = if duration_ms == 0 {
                    1.0
                } else {
                    watch_ms as f32 / duration_ms as f32
                };
                self.view * ratio.min(self.max_completion)
            }
            EventKind::Like => self.like,
            EventKind::Share => self.share,
            EventKind::Comment => self.comment,
            EventKind::FollowCreator => self.follow,
            EventKind::Skip => self.skip,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_round_trip() {
        let line = r#"{"user":"u1","video":"v7","kind":"view","watch_ms":9000,"duration_ms":12000,"timestamp":5}"#;
        let e: Event = serde_json::from_str(line).unwrap();
        assert_eq!(
            e.kind,
            EventKind::View {
                watch_ms: 9000,
                duration_ms: 12000
            }
        );
        assert_eq!(serde_json::to_string(&e).unwrap(), line);
        let like: Event = serde_json::from_str(
            r#"{"user":"u","video":"v","kind":"like","timestamp":1,"country":"US"}"#,
        )
        .unwrap();
        assert_eq!(like.kind, EventKind::Like);
        assert_eq!(like.country.as_deref(), Some("US"));
    }

    #[test]
    fn zero_duration_counts_as_a_view() {
        let w = ConfidenceWeights::default();
        let kind = EventKind::View {
            watch_ms: 5,
            duration_ms: 0,
        };
        assert_eq!(w.weight(&kind), 1.0);
    }
}
