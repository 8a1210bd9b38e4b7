//! Which instance follows which session: rendezvous (highest random weight) hashing.
//! Every instance computes the same answer from the same set of live instances, with
//! no coordination; when an instance joins or leaves, only the sessions it wins or held
//! move (about 1/N of them), never a reshuffle of the rest.

use sha2::{Digest, Sha256};

fn weight(instance: &str, session: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(instance.as_bytes());
    h.update([0]);
    h.update(session.as_bytes());
    let d = h.finalize();
    u64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
}

/// The instance that should follow `session` among `live` (none when empty).
pub fn owner<'a>(live: impl IntoIterator<Item = &'a str>, session: &str) -> Option<&'a str> {
    live.into_iter().max_by_key(|i| (weight(i, session), *i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_instance_takes_only_what_it_wins() {
        let three = ["a", "b", "c"];
        let four = ["a", "b", "c", "d"];
        let sessions: Vec<String> = (0..3000).map(|i| format!("s{i}")).collect();
        let mut moved = 0;
        for s in &sessions {
            let before = owner(three.iter().copied(), s).unwrap();
            let after = owner(four.iter().copied(), s).unwrap();
            if before != after {
                assert_eq!(after, "d", "a session only moves to the new instance");
                moved += 1;
            }
        }
        // About a quarter.
        assert!((500..1000).contains(&moved), "{moved}");
        // Removing "b" moves only b's sessions.
        let two = ["a", "c"];
        for s in &sessions {
            let before = owner(three.iter().copied(), s).unwrap();
            let after = owner(two.iter().copied(), s).unwrap();
            if before != "b" {
                assert_eq!(before, after);
            }
        }
        assert_eq!(owner(std::iter::empty(), "s"), None);
    }
}
