//! `mpshm ls`, `inspect`, `rm` and `gc`: the segments in `/dev/shm`, read through the library's
//! read-only inspection ([`mpshm::segments`], [`mpshm::inspect`]).
//!
//! Who uses a segment comes from two places: its attachment records (queues, pipes, SPSC roles,
//! the synchronisation family), and the memory maps of the processes this user may look at
//! (`/proc/<pid>/maps`), which also show who maps a value, array or lock, whose segments keep
//! no records.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::ExitCode;
use std::time::SystemTime;

use mpshm::{Error, Inspection, LAYOUT_VERSION, LockState, Role, SegmentInfo, State};
use serde_json::{Value, json};

use crate::kit::Res;

/// Where POSIX shared-memory objects live.
const SHM_DIR: &str = "/dev/shm";

/// Which live processes map each file of [`SHM_DIR`] writably, by name: read from every
/// `/proc/<pid>/maps` this process may read.
fn mappers() -> BTreeMap<String, BTreeSet<u32>> {
    let mut out: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    let me = std::process::id();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(maps) = std::fs::read_to_string(entry.path().join("maps")) else {
            continue;
        };
        for line in maps.lines() {
            // The permissions are the second field, the path the sixth; a file unlinked since
            // is marked " (deleted)". Only a writable mapping is a user's: a read-only one is an
            // inspection (`mpshm ls`, `inspect` or `gc` running elsewhere, `mpshm::inspect`),
            // which reads a segment for a moment and needs no name to stay.
            let mut fields = line.split_whitespace();
            let writable = fields.nth(1).is_some_and(|perms| perms.starts_with("rw"));
            let Some(path) = fields.nth(3) else {
                continue;
            };
            if let Some(name) = path.strip_prefix("/dev/shm/")
                && writable
                && !line.ends_with(" (deleted)")
            {
                out.entry(name.to_owned()).or_default().insert(pid);
            }
        }
    }
    out
}

/// Everything `ls`, `inspect` and `gc` know of one segment.
struct Seen {
    info: SegmentInfo,
    /// `inspect`'s answer, for a segment of this build's layout.
    inspected: Option<Result<Inspection, Error>>,
    /// Live processes that map it.
    mapped_by: BTreeSet<u32>,
}

impl Seen {
    fn of(info: SegmentInfo, maps: &BTreeMap<String, BTreeSet<u32>>) -> Seen {
        let inspected = (info.version == LAYOUT_VERSION).then(|| mpshm::inspect(&info.name));
        let mapped_by = maps.get(&info.name).cloned().unwrap_or_default();
        Seen {
            info,
            inspected,
            mapped_by,
        }
    }

    fn inspection(&self) -> Option<&Inspection> {
        self.inspected.as_ref().and_then(|r| r.as_ref().ok())
    }

    /// Live processes attached through records, or holding its lock.
    fn attached_live(&self) -> BTreeSet<u32> {
        let Some(ins) = self.inspection() else {
            return BTreeSet::new();
        };
        let mut pids: BTreeSet<u32> = ins
            .attached
            .iter()
            .filter(|a| a.alive)
            .map(|a| a.pid)
            .collect();
        pids.extend(ins.lock.and_then(|l| l.owner_pid));
        pids
    }

    /// Every live process that uses it: attached, holding its lock, or mapping it.
    fn users(&self) -> BTreeSet<u32> {
        let mut pids = self.attached_live();
        pids.extend(&self.mapped_by);
        pids
    }

    /// The kind column: the kind, or why it is not known.
    fn kind(&self) -> String {
        let v = self.info.version;
        if v > LAYOUT_VERSION {
            return format!("layout v{v} (newer)");
        }
        let kind = self
            .info
            .kind
            .map_or_else(|| "unknown kind".to_owned(), |k| k.to_string());
        if v < LAYOUT_VERSION {
            return format!("{kind} (layout v{v})");
        }
        match &self.inspected {
            Some(Err(Error::NotReady { .. })) => format!("{kind} (not ready)"),
            Some(Err(_)) => format!("{kind} (damaged)"),
            _ => kind,
        }
    }
}

fn all_seen() -> Res<Vec<Seen>> {
    let maps = mappers();
    Ok(mpshm::segments()?
        .into_iter()
        .map(|info| Seen::of(info, &maps))
        .collect())
}

/// `1.5 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// How long ago `t` was: `42s`, `3m12s`, `5h3m`, `2d7h`.
fn age(t: Option<SystemTime>) -> String {
    let Some(secs) = t.and_then(|t| t.elapsed().ok()).map(|d| d.as_secs()) else {
        return "-".to_owned();
    };
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h{}m", s / 3600, s / 60 % 60),
        s => format!("{}d{}h", s / 86_400, s / 3600 % 24),
    }
}

fn pids(set: &BTreeSet<u32>) -> String {
    if set.is_empty() {
        "-".to_owned()
    } else {
        set.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
    }
}

fn secs_since_epoch(t: Option<SystemTime>) -> Value {
    t.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(Value::Null, |d| json!(d.as_secs_f64()))
}

fn role_name(role: Role) -> String {
    match role {
        Role::Producer => "producer".to_owned(),
        Role::Consumer => "consumer".to_owned(),
        Role::End(i) => format!("end {i}"),
        Role::Handle => "handle".to_owned(),
        _ => "attached".to_owned(),
    }
}

fn lock_text(l: &LockState) -> String {
    let mut s = match (l.owner_tid, l.owner_pid) {
        (None, _) if l.owner_died => "free; its last owner died holding it".to_owned(),
        (None, _) => "free".to_owned(),
        (Some(tid), Some(pid)) => format!("held by thread {tid} of pid {pid}"),
        (Some(tid), None) => format!("held by thread {tid}, which is gone"),
    };
    if l.poisoned {
        s += "; poisoned (no one has called mark_consistent)";
    }
    if l.waiters {
        s += "; waiters asleep";
    }
    s
}

fn lock_json(l: &LockState) -> Value {
    json!({
        "owner_tid": l.owner_tid,
        "owner_pid": l.owner_pid,
        "owner_died": l.owner_died,
        "poisoned": l.poisoned,
        "waiters": l.waiters,
    })
}

/// The kind-specific state: its fields, for JSON and (each on a line) for people.
fn state_fields(state: &State) -> Vec<(&'static str, Value)> {
    match state {
        State::Queue {
            len,
            capacity,
            max_message,
            closed,
            lost,
            untracked,
        } => vec![
            ("len", json!(len)),
            ("capacity", json!(capacity)),
            ("max_message", json!(max_message)),
            ("closed", json!(closed)),
            ("lost", json!(lost)),
            ("untracked_producers", json!(untracked[0])),
            ("untracked_consumers", json!(untracked[1])),
        ],
        State::SpscQueue {
            len,
            capacity,
            message,
            closed,
            lost,
        } => vec![
            ("len", json!(len)),
            ("capacity", json!(capacity)),
            ("message", json!(message)),
            ("closed", json!(closed)),
            ("lost", json!(lost)),
        ],
        State::Pipe {
            one_way,
            closed,
            queued,
        } => vec![
            ("one_way", json!(one_way)),
            ("closed", json!(closed)),
            ("queued_chunks", json!(queued)),
        ],
        State::Semaphore {
            value,
            held,
            sleepers,
            initial,
        } => vec![
            ("value", json!(value)),
            ("held", json!(held)),
            ("sleepers", json!(sleepers)),
            ("initial", json!(initial)),
        ],
        State::Event { set, waiters } => vec![("set", json!(set)), ("waiters", json!(waiters))],
        State::Condition { waiting, lock } => {
            vec![("waiting", json!(waiting)), ("lock", json!(lock))]
        }
        State::Barrier {
            parties,
            waiting,
            broken,
        } => vec![
            ("parties", json!(parties)),
            ("waiting", json!(waiting)),
            ("broken", json!(broken)),
        ],
        State::Container {
            len,
            capacity,
            entry_bytes,
        } => vec![
            ("len", json!(len)),
            ("capacity", json!(capacity)),
            ("entry_bytes", json!(entry_bytes)),
        ],
        _ => Vec::new(),
    }
}

fn seen_json(s: &Seen) -> Value {
    let i = &s.info;
    let mut v = json!({
        "name": i.name,
        "version": i.version,
        "readable": i.version <= LAYOUT_VERSION,
        "kind": i.kind.map(|k| k.to_string()),
        "type_tag": i.type_tag,
        "elem_size": i.elem_size,
        "count": i.count,
        "size": i.size,
        "created": secs_since_epoch(i.created),
        "creator_pid": i.creator_pid,
        "creator_alive": i.creator_alive,
        "ready": i.ready,
        "intact": i.intact,
        "mapped_by": s.mapped_by,
        "users": s.users(),
    });
    match &s.inspected {
        Some(Ok(ins)) => {
            v["params"] = json!(ins.params);
            v["lock"] = ins.lock.as_ref().map_or(Value::Null, lock_json);
            v["attached"] = ins
                .attached
                .iter()
                .map(|a| {
                    json!({
                        "role": role_name(a.role),
                        "pid": a.pid,
                        "alive": a.alive,
                        "armed": a.armed,
                    })
                })
                .collect();
            v["state"] = state_fields(&ins.state)
                .into_iter()
                .map(|(k, val)| (k.to_owned(), val))
                .collect::<serde_json::Map<_, _>>()
                .into();
        }
        Some(Err(e)) => v["error"] = json!(e.to_string()),
        None => {}
    }
    v
}

/// `mpshm ls`.
pub fn ls(json: bool) -> Res<ExitCode> {
    let all = all_seen()?;
    if json {
        let rows: Vec<Value> = all.iter().map(seen_json).collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if all.is_empty() {
        println!("no mpshm segments in {SHM_DIR}");
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<[String; 8]> = all
        .iter()
        .map(|s| {
            let i = &s.info;
            let known = i.version <= LAYOUT_VERSION;
            [
                i.name.clone(),
                s.kind(),
                if known {
                    i.type_tag.clone()
                } else {
                    "-".into()
                },
                bytes(i.size),
                if known {
                    i.creator_pid.to_string()
                } else {
                    "-".into()
                },
                match (known, i.creator_alive) {
                    (false, _) => "-".into(),
                    (true, true) => "yes".into(),
                    (true, false) => "no".into(),
                },
                age(i.created),
                pids(&s.users()),
            ]
        })
        .collect();
    print_table(
        &[
            "NAME", "KIND", "TYPE", "SIZE", "CREATOR", "ALIVE", "AGE", "ATTACHED",
        ],
        &rows,
    );
    Ok(ExitCode::SUCCESS)
}

fn print_table<const N: usize>(head: &[&str; N], rows: &[[String; N]]) {
    let mut width = head.map(|h| h.chars().count());
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(width).enumerate() {
            if i + 1 == N {
                s += c;
            } else {
                s += &format!("{c:<w$}  ");
            }
        }
        println!("{}", s.trim_end());
    };
    line(head.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

/// `mpshm inspect NAME`.
pub fn inspect(name: &str, json: bool) -> Res<ExitCode> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    let Some(info) = mpshm::segments()?.into_iter().find(|s| s.name == bare) else {
        // Not listed: say why, in the library's words (not found, not mpshm, a bad name, ...).
        return Err(match mpshm::inspect(bare) {
            Err(e) => e.into(),
            Ok(_) => format!("{bare}: not readable as an mpshm segment").into(),
        });
    };
    let s = Seen::of(info, &mappers());
    if json {
        println!("{}", serde_json::to_string_pretty(&seen_json(&s))?);
        return Ok(ExitCode::SUCCESS);
    }
    let i = &s.info;
    let mut lines: Vec<(String, String)> = vec![("name".into(), i.name.clone())];
    let mut push = |k: &str, v: String| lines.push((k.to_owned(), v));
    if i.version > LAYOUT_VERSION {
        push(
            "layout",
            format!(
                "version {} — newer than this build's {LAYOUT_VERSION}: its header is not read",
                i.version
            ),
        );
        push("size", bytes(i.size));
        push("age", age(i.created));
    } else {
        push("kind", s.kind());
        push("type", i.type_tag.clone());
        push("elements", format!("{} × {} B", i.count, i.elem_size));
        push(
            "layout",
            if i.version == LAYOUT_VERSION {
                format!("version {}", i.version)
            } else {
                format!(
                    "version {} — older than this build's {LAYOUT_VERSION}: only its header is read",
                    i.version
                )
            },
        );
        push(
            "size",
            format!(
                "{} ({})",
                bytes(i.size),
                if i.intact {
                    "as long as its header says"
                } else {
                    "shorter or longer than its header says: damaged"
                }
            ),
        );
        push("age", age(i.created));
        push(
            "creator",
            format!(
                "pid {} ({})",
                i.creator_pid,
                if i.creator_alive { "alive" } else { "gone" }
            ),
        );
        push("ready", i.ready.to_string());
    }
    match &s.inspected {
        Some(Ok(ins)) => {
            push("params", format!("{:?}", ins.params));
            if let Some(l) = &ins.lock {
                push("lock", lock_text(l));
            }
            for (k, v) in state_fields(&ins.state) {
                push(k, v.as_str().map_or_else(|| v.to_string(), str::to_owned));
            }
        }
        Some(Err(e)) => push("state", format!("not read: {e}")),
        None => {}
    }
    push("mapped by", pids(&s.mapped_by));
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in &lines {
        println!("{k:<width$}  {v}");
    }
    if let Some(ins) = s.inspection()
        && !ins.attached.is_empty()
    {
        println!();
        let rows: Vec<[String; 4]> = ins
            .attached
            .iter()
            .map(|a| {
                [
                    role_name(a.role),
                    a.pid.to_string(),
                    if a.alive { "yes" } else { "no" }.into(),
                    if a.armed { "yes" } else { "no" }.into(),
                ]
            })
            .collect();
        print_table(&["ATTACHED AS", "PID", "ALIVE", "ARMED"], &rows);
    }
    Ok(ExitCode::SUCCESS)
}

/// Checks that `name` names a file directly in [`SHM_DIR`].
fn plain_name(name: &str) -> Res<&str> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    if bare.is_empty() || bare == "." || bare == ".." || bare.contains('/') {
        return Err(format!("{name:?} is not a name in {SHM_DIR}").into());
    }
    Ok(bare)
}

/// `mpshm rm NAME...`.
pub fn rm(names: &[String], force: bool) -> Res<ExitCode> {
    let listed: BTreeMap<String, SegmentInfo> = mpshm::segments()?
        .into_iter()
        .map(|s| (s.name.clone(), s))
        .collect();
    let maps = mappers();
    let mut failed = false;
    for name in names {
        let result = (|| -> Res<String> {
            let bare = plain_name(name)?;
            let path = Path::new(SHM_DIR).join(bare);
            std::fs::symlink_metadata(&path).map_err(|e| format!("{bare}: {e}"))?;
            let users = maps.get(bare).map(pids);
            let note = users.map_or(String::new(), |p| {
                format!(" (still mapped by {p}, which keep their mapping)")
            });
            if listed.contains_key(bare) {
                mpshm::unlink(bare)?;
                Ok(format!("removed {bare}{note}"))
            } else if force {
                std::fs::remove_file(&path).map_err(|e| format!("{bare}: {e}"))?;
                Ok(format!(
                    "removed {bare} (not an mpshm segment; --force){note}"
                ))
            } else {
                Err(format!(
                    "{bare}: not an mpshm segment (no mpshm header, or not readable): left alone; \
                     --force removes it anyway"
                )
                .into())
            }
        })();
        match result {
            Ok(said) => println!("{said}"),
            Err(e) => {
                eprintln!("mpshm rm: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Why `gc` keeps a segment; `None` if it is garbage.
fn keep_reason(s: &Seen) -> Option<String> {
    let i = &s.info;
    if i.version > LAYOUT_VERSION {
        return Some(format!(
            "layout version {} is newer than this build's: not read",
            i.version
        ));
    }
    if i.creator_pid == 0 {
        // A header that names no creator (damaged): its creator's death cannot be shown.
        return Some("its header names no creator: `mpshm rm` removes it".to_owned());
    }
    if i.creator_alive {
        return Some(format!("its creator (pid {}) is alive", i.creator_pid));
    }
    let users = s.users();
    if !users.is_empty() {
        return Some(format!("in use by {}", pids(&users)));
    }
    None
}

/// `mpshm gc`.
pub fn gc(dry_run: bool, prefix: Option<&str>, json: bool) -> Res<ExitCode> {
    let mut rows = Vec::new();
    let mut failed = false;
    let wanted = |s: &Seen| prefix.is_none_or(|p| s.info.name.starts_with(p));
    for s in all_seen()?.into_iter().filter(wanted) {
        let (action, why) = match keep_reason(&s) {
            Some(why) => ("kept", why),
            None => {
                let why = match &s.inspected {
                    Some(Err(Error::NotReady { .. })) => {
                        "its creator died before it finished making it".to_owned()
                    }
                    Some(Err(e)) => format!("its creator is gone and no one uses it ({e})"),
                    _ => "its creator is gone and no one uses it".to_owned(),
                };
                if dry_run {
                    ("would remove", why)
                } else {
                    match mpshm::unlink(&s.info.name) {
                        Ok(()) => ("removed", why),
                        Err(e) => {
                            failed = true;
                            ("failed", e.to_string())
                        }
                    }
                }
            }
        };
        rows.push((s.info.name.clone(), s.kind(), action, why));
    }
    if json {
        let v: Vec<Value> = rows
            .iter()
            .map(|(name, kind, action, why)| {
                json!({ "name": name, "kind": kind, "action": action, "why": why })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if rows.is_empty() {
        println!("no mpshm segments in {SHM_DIR}");
    } else {
        let table: Vec<[String; 4]> = rows
            .into_iter()
            .map(|(n, k, a, w)| [n, k, a.to_owned(), w])
            .collect();
        print_table(&["NAME", "KIND", "ACTION", "WHY"], &table);
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
