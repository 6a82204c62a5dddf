//! A seeded synthetic short-video world: users with countries, creators with countries, videos
//! with durations and topics, and a stream of feedback events with a planted structure.
//!
//! The generative story, per event:
//!
//! 1. a user is drawn by activity (Zipf, exponent 0.7, over a seeded permutation);
//! 2. a video is drawn from the user's primary topic (55 %), secondary topic (20 %) or the whole
//!    catalogue (25 %), by Zipf popularity (exponent 1) within that list; a video by a creator
//!    from another country is re-drawn once with probability 0.35 (affinity for one's own
//!    country's creators);
//! 3. the user's interest is `0.2 + 0.6·[primary topic] + 0.4·[secondary topic] + 0.1·[same
//!    country]`; they skip with probability `0.6·(1 − interest)`, else watch
//!    `interest × U(0.5, 1.6)` of the video (at most twice through), then like, share, comment
//!    or follow with probabilities `0.25`, `0.05`, `0.04`, `0.02` times interest.
//!
//! Each of those actions is one event, until the requested number of events is reached. About a
//! third of users and creators are in the US. The same seed always yields the same world.

use std::io::{BufWriter, Write};
use std::path::Path;

use domicile_residency::CountryCode;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::event::{ConfidenceWeights, Event, EventKind};
use crate::interactions::{Interactions, InteractionsBuilder};
use crate::RecsysError;

/// The size and seed of a world.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WorldConfig {
    /// How many users.
    pub users: usize,
    /// How many videos.
    pub videos: usize,
    /// How many events (views, likes, shares, comments, follows and skips together).
    pub events: usize,
    /// The seed.
    pub seed: u64,
    /// How many latent topics (the planted rank).
    pub topics: usize,
    /// The share of users and creators in the US.
    pub us_share: f64,
    /// The first timestamp, in milliseconds since the Unix epoch.
    pub start_ms: i64,
    /// The span of the timestamps, in days.
    pub days: u32,
}

impl Default for WorldConfig {
    fn default() -> Self {
        WorldConfig {
            users: 10_000,
            videos: 5_000,
            events: 400_000,
            seed: 42,
            topics: 24,
            us_share: 1.0 / 3.0,
            start_ms: 1_700_000_000_000,
            days: 30,
        }
    }
}

/// A user of the world.
#[derive(Debug, Clone, PartialEq)]
pub struct WorldUser {
    /// The user's id (`u<index>`).
    pub id: String,
    /// The country of residence.
    pub country: CountryCode,
    /// The main latent topic.
    pub primary_topic: u32,
    /// The second latent topic.
    pub secondary_topic: u32,
}

/// A creator of the world.
#[derive(Debug, Clone, PartialEq)]
pub struct WorldCreator {
    /// The creator's id (`c<index>`).
    pub id: String,
    /// The creator's country.
    pub country: CountryCode,
}

/// A video of the world.
#[derive(Debug, Clone, PartialEq)]
pub struct WorldVideo {
    /// The video's id (`v<index>`).
    pub id: String,
    /// Index of its creator.
    pub creator: u32,
    /// Its length in milliseconds.
    pub duration_ms: u64,
    /// Its latent topic.
    pub topic: u32,
}

/// A compact event of the world, by indices.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WorldEvent {
    /// The user's index.
    pub user: u32,
    /// The video's index.
    pub video: u32,
    /// What happened.
    pub kind: EventKind,
    /// When, in milliseconds since the Unix epoch.
    pub timestamp: i64,
}

/// A generated world: its population and catalogue. Events are generated on demand, so that a
/// 10M-event world costs no more memory than the consumer keeps.
#[derive(Debug, Clone)]
pub struct World {
    /// The configuration it was built from.
    pub config: WorldConfig,
    /// The users.
    pub users: Vec<WorldUser>,
    /// The creators.
    pub creators: Vec<WorldCreator>,
    /// The videos.
    pub videos: Vec<WorldVideo>,
    user_cdf: Vec<f64>,
    user_order: Vec<u32>,
    /// Videos in global popularity order, and per topic.
    global: Vec<u32>,
    global_cdf: Vec<f64>,
    by_topic: Vec<Vec<u32>>,
    topic_cdf: Vec<Vec<f64>>,
}

/// Countries other than the US, with rough relative weights.
const OTHER_COUNTRIES: [(&str, f64); 10] = [
    ("GB", 0.10),
    ("DE", 0.10),
    ("FR", 0.08),
    ("BR", 0.14),
    ("IN", 0.10),
    ("ID", 0.12),
    ("MX", 0.10),
    ("JP", 0.08),
    ("CA", 0.08),
    ("PH", 0.10),
];

fn zipf_cdf(n: usize, exponent: f64) -> Vec<f64> {
    let mut cdf = Vec::with_capacity(n);
    let mut total = 0.0;
    for r in 0..n {
        total += 1.0 / ((r + 1) as f64).powf(exponent);
        cdf.push(total);
    }
    for c in cdf.iter_mut() {
        *c /= total;
    }
    cdf
}

fn draw(cdf: &[f64], rng: &mut ChaCha8Rng) -> usize {
    let x: f64 = rng.random();
    cdf.partition_point(|&c| c < x).min(cdf.len() - 1)
}

fn country(rng: &mut ChaCha8Rng, us_share: f64) -> CountryCode {
    let code = if rng.random_bool(us_share) {
        "US"
    } else {
        let total: f64 = OTHER_COUNTRIES.iter().map(|c| c.1).sum();
        let mut x = rng.random::<f64>() * total;
        let mut pick = OTHER_COUNTRIES[0].0;
        for (c, w) in OTHER_COUNTRIES {
            pick = c;
            if x < w {
                break;
            }
            x -= w;
        }
        pick
    };
    CountryCode::parse(code).expect("the table holds assigned codes")
}

impl World {
    /// Builds the population and catalogue of a world.
    pub fn generate(config: WorldConfig) -> Result<World, RecsysError> {
        let bad = |name, value: usize| {
            Err(RecsysError::InvalidConfig {
                name,
                value: value.to_string(),
                reason: "expected at least 1",
            })
        };
        if config.users == 0 {
            return bad("users", 0);
        }
        if config.videos == 0 {
            return bad("videos", 0);
        }
        if config.topics == 0 {
            return bad("topics", 0);
        }
        if !(0.0..=1.0).contains(&config.us_share) {
            return Err(RecsysError::InvalidConfig {
                name: "us_share",
                value: config.us_share.to_string(),
                reason: "expected a share between 0 and 1",
            });
        }
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let topics = config.topics as u32;
        let users: Vec<WorldUser> = (0..config.users)
            .map(|u| {
                let primary = rng.random_range(0..topics);
                let secondary = if topics > 1 {
                    (primary + rng.random_range(1..topics)) % topics
                } else {
                    primary
                };
                WorldUser {
                    id: format!("u{u}"),
                    country: country(&mut rng, config.us_share),
                    primary_topic: primary,
                    secondary_topic: secondary,
                }
            })
            .collect();
        let n_creators = (config.videos / 20).max(1);
        let creators: Vec<WorldCreator> = (0..n_creators)
            .map(|c| WorldCreator {
                id: format!("c{c}"),
                country: country(&mut rng, config.us_share),
            })
            .collect();
        let creator_topic: Vec<u32> = (0..n_creators)
            .map(|_| rng.random_range(0..topics))
            .collect();
        let videos: Vec<WorldVideo> = (0..config.videos)
            .map(|v| {
                let creator = rng.random_range(0..n_creators as u32);
                // Creators mostly stay on their topic.
                let topic = if rng.random_bool(0.8) {
                    creator_topic[creator as usize]
                } else {
                    rng.random_range(0..topics)
                };
                WorldVideo {
                    id: format!("v{v}"),
                    creator,
                    duration_ms: rng.random_range(5_000..180_000),
                    topic,
                }
            })
            .collect();
        let mut global: Vec<u32> = (0..config.videos as u32).collect();
        shuffle(&mut global, &mut rng);
        let mut by_topic = vec![Vec::new(); config.topics];
        for &v in &global {
            by_topic[videos[v as usize].topic as usize].push(v);
        }
        let topic_cdf = by_topic.iter().map(|l| zipf_cdf(l.len(), 1.0)).collect();
        let mut user_order: Vec<u32> = (0..config.users as u32).collect();
        shuffle(&mut user_order, &mut rng);
        Ok(World {
            config,
            user_cdf: zipf_cdf(config.users, 0.7),
            user_order,
            global_cdf: zipf_cdf(config.videos, 1.0),
            global,
            by_topic,
            topic_cdf,
            users,
            creators,
            videos,
        })
    }

    /// Calls `sink` with every event of the world, in generation order (timestamps are random
    /// within the world's span, not sorted).
    pub fn for_each_event(&self, mut sink: impl FnMut(WorldEvent)) {
        // A separate stream from the catalogue's, so the events depend only on the seed.
        let mut rng = ChaCha8Rng::seed_from_u64(self.config.seed ^ 0x6576_656e_7473);
        let span = self.config.days as i64 * 86_400_000;
        let mut emitted = 0usize;
        let target = self.config.events;
        while emitted < target {
            let user = self.user_order[draw(&self.user_cdf, &mut rng)];
            let u = &self.users[user as usize];
            let mut video = self.pick_video(u, &mut rng);
            if self.creators[self.videos[video as usize].creator as usize].country != u.country
                && rng.random_bool(0.35)
            {
                video = self.pick_video(u, &mut rng);
            }
            let v = &self.videos[video as usize];
            let same_country = self.creators[v.creator as usize].country == u.country;
            let interest: f64 = 0.2
                + if v.topic == u.primary_topic { 0.6 } else { 0.0 }
                + if v.topic == u.secondary_topic {
                    0.4
                } else {
                    0.0
                }
                + if same_country { 0.1 } else { 0.0 };
            let timestamp = self.config.start_ms + rng.random_range(0..span.max(1));
            let mut emit = |kind: EventKind, at: i64| {
                if emitted < target {
                    sink(WorldEvent {
                        user,
                        video,
                        kind,
                        timestamp: at,
                    });
                    emitted += 1;
                }
            };
            if rng.random_bool((0.6 * (1.0 - interest)).clamp(0.0, 1.0)) {
                emit(EventKind::Skip, timestamp);
                continue;
            }
            let ratio = (interest * rng.random_range(0.5..1.6)).clamp(0.05, 2.0);
            let watch_ms = (v.duration_ms as f64 * ratio) as u64;
            emit(
                EventKind::View {
                    watch_ms,
                    duration_ms: v.duration_ms,
                },
                timestamp,
            );
            let after = timestamp + watch_ms as i64;
            for (p, kind) in [
                (0.25, EventKind::Like),
                (0.05, EventKind::Share),
                (0.04, EventKind::Comment),
                (0.02, EventKind::FollowCreator),
            ] {
                if rng.random_bool((p * interest).min(1.0)) {
                    emit(kind, after);
                }
            }
        }
    }

    fn pick_video(&self, u: &WorldUser, rng: &mut ChaCha8Rng) -> u32 {
        let r: f64 = rng.random();
        let topic = if r < 0.55 {
            Some(u.primary_topic)
        } else if r < 0.75 {
            Some(u.secondary_topic)
        } else {
            None
        };
        match topic {
            Some(t) if !self.by_topic[t as usize].is_empty() => {
                self.by_topic[t as usize][draw(&self.topic_cdf[t as usize], rng)]
            }
            _ => self.global[draw(&self.global_cdf, rng)],
        }
    }

    /// The events as [`Event`]s with string ids, the user's country and the video's creator.
    pub fn event(&self, e: &WorldEvent) -> Event {
        let v = &self.videos[e.video as usize];
        let u = &self.users[e.user as usize];
        Event {
            user: u.id.clone(),
            video: v.id.clone(),
            kind: e.kind,
            timestamp: e.timestamp,
            country: Some(u.country.to_string()),
            creator: Some(self.creators[v.creator as usize].id.clone()),
        }
    }

    /// Every event, weighted by `weights` and aggregated into the interaction matrix, with every
    /// user's country and every video's creator recorded. User `u<i>` has index `i`, video
    /// `v<j>` index `j`.
    pub fn interactions(&self, weights: &ConfidenceWeights) -> Interactions {
        let mut b = InteractionsBuilder::new();
        for u in &self.users {
            let i = b.user(&u.id);
            b.set_country(i, u.country);
        }
        for v in &self.videos {
            let i = b.item(&v.id);
            b.set_creator(i, &self.creators[v.creator as usize].id);
        }
        self.for_each_event(|e| {
            b.add_indexed(e.user, e.video, weights.weight(&e.kind), e.timestamp)
        });
        b.build()
            .expect("generated weights are finite and far from overflowing")
    }

    /// Writes every event as JSONL (the [`Event`] format).
    pub fn write_events_jsonl(&self, path: &Path) -> Result<(), RecsysError> {
        let file = std::fs::File::create(path).map_err(|e| RecsysError::io("create", path, e))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let mut result = Ok(());
        self.for_each_event(|e| {
            if result.is_ok() {
                let line = serde_json::to_string(&self.event(&e)).expect("events serialise");
                result = writeln!(out, "{line}");
            }
        });
        result
            .and_then(|_| out.flush())
            .map_err(|e| RecsysError::io("write", path, e))
    }

    /// Writes the weighted interactions as CSV (`user,item,weight,timestamp,country,creator`).
    pub fn write_interactions_csv(
        &self,
        path: &Path,
        weights: &ConfidenceWeights,
    ) -> Result<(), RecsysError> {
        self.interactions(weights).write_csv(path)
    }
}

fn shuffle(v: &mut [u32], rng: &mut ChaCha8Rng) {
    for i in (1..v.len()).rev() {
        let j = rng.random_range(0..=i);
        v.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> World {
        World::generate(WorldConfig {
            users: 300,
            videos: 200,
            events: 5_000,
            ..WorldConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn seeded_and_exact_in_size() {
        let (a, b) = (small(), small());
        let mut ea = Vec::new();
        a.for_each_event(|e| ea.push(e));
        let mut eb = Vec::new();
        b.for_each_event(|e| eb.push(e));
        assert_eq!(ea.len(), 5_000);
        assert_eq!(ea, eb);
        assert_eq!(a.users, b.users);
        let us = a
            .users
            .iter()
            .filter(|u| u.country.as_str() == "US")
            .count();
        assert!((70..130).contains(&us), "{us} of 300 users in the US");
    }

    #[test]
    fn behaviour_has_skips_likes_and_home_affinity() {
        let w = small();
        let (mut skips, mut likes) = (0, 0);
        let mut views = Vec::new();
        w.for_each_event(|e| match e.kind {
            EventKind::Skip => skips += 1,
            EventKind::Like => likes += 1,
            EventKind::View { .. } => views.push((e.user, e.video)),
            _ => {}
        });
        assert!(
            skips > 100 && likes > 100 && views.len() > 1000,
            "{skips} {likes} {}",
            views.len()
        );
        let home = |pairs: &mut dyn Iterator<Item = (u32, u32)>| {
            pairs
                .filter(|&(u, v)| {
                    w.creators[w.videos[v as usize].creator as usize].country
                        == w.users[u as usize].country
                })
                .count()
        };
        let observed = home(&mut views.iter().copied());
        // The null: the same users and the same videos, paired at random (a rotation), which keeps
        // activity and popularity but breaks any link between a viewer's and a creator's country.
        let rotated = home(
            &mut views
                .iter()
                .zip(views.iter().skip(views.len() / 2).chain(&views))
                .map(|(a, b)| (a.0, b.1)),
        );
        assert!(
            observed as f64 > 1.2 * rotated as f64,
            "home views {observed}, null {rotated}"
        );
        let m = w.interactions(&ConfidenceWeights::default());
        assert_eq!(m.n_users(), 300);
        assert!(m.pairs().len() > 1000);
    }
}
