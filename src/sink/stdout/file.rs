//! stdout on a regular file: its end read back at start (only when the next write goes
//! to the end: `O_APPEND`, or an offset at the end), and [`reconcile`], the pure
//! comparison of that end with the lines expected after the saved position, which
//! decides how many are written already and what completes a torn last line.

/// How much of the end of a regular file on stdout is read back at start.
const TAIL: u64 = 256 * 1024;

/// What the end of the output says about the lines expected after the saved position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconciled {
    /// How many of the expected lines are in the output, whole, once `write_first` is
    /// written: the position moves past that many entries.
    pub done: usize,
    /// Bytes to write before anything else: the rest of a torn last line that begins
    /// the next expected line (it then counts in `done`), or `\n` to end a torn line
    /// that is not one of them; empty when the output ends with a whole line.
    pub write_first: Vec<u8>,
}

/// Compares the end of the output (`tail`, starting at a line boundary: the whole file,
/// or its last bytes after their first `\n`) with `expected`, the lines (each ending
/// with `\n`) of the entries after the saved position, in order.
///
/// The expected lines already written are the first `k` of them when they are exactly
/// the output's last whole lines; after them, a torn line (bytes after the last `\n`)
/// that is a prefix of line `k` is completed. Lines are unique (each holds its
/// session and Item), so the output's last whole line names the only possible `k`.
pub fn reconcile(tail: &[u8], expected: &[Vec<u8>]) -> Reconciled {
    let (whole, torn) = match memchr::memrchr(b'\n', tail) {
        Some(i) => tail.split_at(i + 1),
        None => (&tail[..0], tail),
    };
    let mut done = 0;
    if let Some((_, before)) = whole.split_last() {
        let last = &whole[memchr::memrchr(b'\n', before).map_or(0, |i| i + 1)..];
        if let Some(j) = expected.iter().position(|l| l.as_slice() == last) {
            let len: usize = expected[..=j].iter().map(Vec::len).sum();
            if let Some(start) = whole.len().checked_sub(len) {
                let at_boundary = start == 0 || whole[start - 1] == b'\n';
                let mut rest = &whole[start..];
                let same = expected[..=j]
                    .iter()
                    .all(|l| match rest.strip_prefix(l.as_slice()) {
                        Some(r) => {
                            rest = r;
                            true
                        }
                        None => false,
                    });
                if at_boundary && same {
                    done = j + 1;
                }
            }
        }
    }
    if torn.is_empty() {
        return Reconciled {
            done,
            write_first: Vec::new(),
        };
    }
    match expected.get(done) {
        Some(next) if next.starts_with(torn) => Reconciled {
            done: done + 1,
            write_first: next[torn.len()..].to_vec(),
        },
        _ => Reconciled {
            done,
            write_first: b"\n".to_vec(),
        },
    }
}

/// The end of the regular file on the process's stdout — at most its last 256 KiB,
/// from a line boundary — if stdout is one and the next write goes to its end (opened
/// for appending, or written up to its end). `None` otherwise (a pipe, a terminal,
/// `/dev/null`, not Linux, or the file cannot be read back).
pub fn end_of_stdout() -> Option<Vec<u8>> {
    use std::io::Seek;
    let meta = std::fs::metadata("/proc/self/fd/1").ok()?;
    if !meta.is_file() {
        return None;
    }
    // The write offset of fd 1 (shared by the duplicate, which is only asked, not moved).
    // SAFETY: fd 1 is open for the process's lifetime (the metadata above resolved it).
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(1) };
    let mut dup = std::fs::File::from(fd.try_clone_to_owned().ok()?);
    let offset = dup.stream_position().ok()?;
    let file = std::fs::File::open("/proc/self/fd/1").ok()?;
    let len = file.metadata().ok()?.len();
    if offset != len && !stdout_appends() {
        return None;
    }
    end_of(&file, len, TAIL).ok()
}

/// The last bytes (at most `at_most`) of the first `len` of `file`, from a line
/// boundary: a partial line they would begin with is left out.
fn end_of(file: &std::fs::File, len: u64, at_most: u64) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    // One byte before the window too: whether the window begins a line.
    let from = len.saturating_sub(at_most + 1);
    let mut tail = vec![0; (len - from) as usize];
    file.read_exact_at(&mut tail, from)?;
    if from > 0 || tail.len() as u64 > at_most {
        let first = memchr::memchr(b'\n', &tail).map_or(tail.len(), |i| i + 1);
        tail.drain(..first);
    }
    Ok(tail)
}

/// Whether fd 1 was opened with `O_APPEND` (from `/proc/self/fdinfo/1`).
fn stdout_appends() -> bool {
    const O_APPEND: u32 = if cfg!(any(
        target_arch = "mips",
        target_arch = "mips64",
        target_arch = "sparc",
        target_arch = "sparc64"
    )) {
        0o10
    } else {
        0o2000
    };
    let Ok(info) = std::fs::read_to_string("/proc/self/fdinfo/1") else {
        return false;
    };
    info.lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
        .is_some_and(|flags| flags & O_APPEND != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{JournalEntry, Seq};
    use crate::sink::stdout::tests::lines;

    fn entry(seq: Seq, session: &str, id: &str) -> JournalEntry {
        JournalEntry {
            seq,
            session: session.into(),
            item_id: Some(id.into()),
            absolute_time: None,
            json: format!("{{\"Id\":\"{id}\",\"Content\":\"text of {id}\"}}").into(),
        }
    }

    /// Lines `a`..`f` of two sessions: `a`, `b` saved; `c`..`f` expected.
    fn fixture() -> (Vec<u8>, Vec<Vec<u8>>) {
        let all: Vec<_> = ["a", "b", "c", "d", "e", "f"]
            .iter()
            .enumerate()
            .map(|(i, id)| entry(i as Seq + 1, if i % 2 == 0 { "s" } else { "t" }, id))
            .collect();
        let all = lines(&all);
        (all[..2].concat(), all[2..].to_vec())
    }

    fn nothing(done: usize) -> Reconciled {
        Reconciled {
            done,
            write_first: Vec::new(),
        }
    }

    #[test]
    fn a_whole_batch_written_before_the_kill_is_not_written_again() {
        let (saved, expected) = fixture();
        let file = [saved.clone(), expected.concat()].concat();
        assert_eq!(reconcile(&file, &expected), nothing(4));
        // The file's start need not be in the tail.
        assert_eq!(reconcile(&expected.concat(), &expected), nothing(4));
    }

    #[test]
    fn part_of_a_batch_counts_up_to_its_last_whole_line() {
        let (saved, expected) = fixture();
        let file = [saved.clone(), expected[..2].concat()].concat();
        assert_eq!(reconcile(&file, &expected), nothing(2));
        let file = [saved, expected[..1].concat()].concat();
        assert_eq!(reconcile(&file, &expected), nothing(1));
    }

    #[test]
    fn a_torn_line_is_completed() {
        let (saved, expected) = fixture();
        let cut = 7;
        let file = [saved.clone(), expected[0].clone(), expected[1][..cut].to_vec()].concat();
        assert_eq!(
            reconcile(&file, &expected),
            Reconciled {
                done: 2,
                write_first: expected[1][cut..].to_vec(),
            }
        );
        // Torn in the first line of the batch, even in its first byte.
        let file = [saved.clone(), expected[0][..1].to_vec()].concat();
        assert_eq!(
            reconcile(&file, &expected),
            Reconciled {
                done: 1,
                write_first: expected[0][1..].to_vec(),
            }
        );
        // Everything but the newline.
        let last = expected[3].len() - 1;
        let file = [expected[..3].concat(), expected[3][..last].to_vec()].concat();
        assert_eq!(
            reconcile(&file, &expected),
            Reconciled {
                done: 4,
                write_first: b"\n".to_vec(),
            }
        );
    }

    #[test]
    fn no_match_leaves_the_position_where_it_was() {
        let (saved, expected) = fixture();
        // Only the saved lines: the kill came after the save.
        assert_eq!(reconcile(&saved, &expected), nothing(0));
        assert_eq!(reconcile(b"", &expected), nothing(0));
        assert_eq!(reconcile(&saved, &[]), nothing(0));
        // A later line without the ones before it (a gap: not what a kill leaves).
        let file = [saved.clone(), expected[1].clone()].concat();
        assert_eq!(reconcile(&file, &expected), nothing(0));
        // Expected lines, then something else after them.
        let file = [saved, expected[0].clone(), b"{\"log\":1}\n".to_vec()].concat();
        assert_eq!(reconcile(&file, &expected), nothing(0));
    }

    #[test]
    fn an_unrelated_file_is_only_given_a_line_break() {
        let (_, expected) = fixture();
        assert_eq!(reconcile(b"hello\nworld\n", &expected), nothing(0));
        assert_eq!(
            reconcile(b"hello\nwor", &expected),
            Reconciled {
                done: 0,
                write_first: b"\n".to_vec(),
            }
        );
        // A line that ends like an expected one is not taken for it.
        let mut file = b"xx".to_vec();
        file.extend_from_slice(&expected[0]);
        assert_eq!(reconcile(&file, &expected[..1]), nothing(0));
    }

    #[test]
    fn the_end_of_a_file_is_read_from_a_line_boundary() {
        use std::io::Write;
        let mut file = tempfile::tempfile().unwrap();
        assert_eq!(end_of(&file, 0, 8).unwrap(), b"");
        file.write_all(b"one\ntwo\nthree\nfou").unwrap();
        let end = |at_most| String::from_utf8(end_of(&file, 17, at_most).unwrap()).unwrap();
        assert_eq!(end(100), "one\ntwo\nthree\nfou");
        assert_eq!(end(17), "one\ntwo\nthree\nfou");
        assert_eq!(end(13), "two\nthree\nfou", "the window begins a line");
        assert_eq!(end(12), "three\nfou", "a partial first line is left out");
        assert_eq!(end(3), "fou");
        assert_eq!(end(2), "", "no line begins within the window");
        // Only the first `len` bytes count.
        assert_eq!(String::from_utf8(end_of(&file, 8, 5).unwrap()).unwrap(), "two\n");
    }
}
