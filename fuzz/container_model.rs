//! Arbitrary operation sequences on a real `SharedDict` and `SharedList` in `/dev/shm`, against
//! a model (an insertion-ordered `Vec` of pairs, and a `Vec`), and arbitrary bytes written over
//! their shared memory followed by operations, which must return `Ok` or `Err`, never panic,
//! crash or hang.
//!
//! Input format:
//!
//! - byte 0: bit 0 picks the mode: 0 checks against the model, 1 damages the memory first;
//!   bits 1-4 are the dict's capacity minus one (1 to 16), bits 5-7 the list's (1 to 8).
//! - model mode: then operations, one byte each (plus argument bytes, read as available):
//!   see `step`. They go through either the creating handles or handles opened by name.
//! - damage mode: the first 8 bytes are operations that fill the containers (as in model mode),
//!   then patches until the input ends: a little-endian `u16` offset (modulo the payload's
//!   length), a length byte (modulo 32), and that many bytes, written over the payload of the
//!   dict (offset bit 15 clear) or the list (set). The header and the lock area are left alone:
//!   `open_header` fuzzes those, and a lock word that looks held by a live thread rightly
//!   blocks. Then every operation runs once; finally `clear` must make both usable again.
//!
//! The caller names the segments; they are created fresh each run and removed when their
//! handles drop.
//!
//! Shared by the `container_ops` fuzz target and the proptest in `tests/props.rs` (through
//! `#[path]`), so that a machine without a nightly toolchain checks the same thing.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;

use mpshm::prelude::*;
use mpshm::{ContainerError, SharedDict, SharedList};

/// Bytes of the input, read one at a time; zeros once it runs out.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn next(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn index(&mut self) -> i64 {
        i64::from(self.next() as i8)
    }
}

type Dict = SharedDict<u8, u32>;
type List = SharedList<u16>;

/// The containers, through two handles each, and their model.
struct World {
    dicts: [Dict; 2],
    lists: [List; 2],
    dict_cap: usize,
    list_cap: usize,
    dict: Vec<(u8, u32)>,
    list: Vec<u16>,
    /// Which handle the next operation uses.
    other: usize,
}

fn allowed<T: std::fmt::Debug>(r: Result<T, ContainerError>, what: &str) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(ContainerError::Full { .. } | ContainerError::IndexOutOfRange { .. }) => None,
        Err(e) => panic!("{what}: {e}"),
    }
}

impl World {
    fn new(dn: &str, ln: &str, dict_cap: usize, list_cap: usize) -> World {
        let d = Dict::create(dn, dict_cap).expect("create the dict");
        let l = List::create(ln, list_cap).expect("create the list");
        World {
            dicts: [d, Dict::open(dn).expect("open the dict")],
            lists: [l, List::open(ln).expect("open the list")],
            dict_cap,
            list_cap,
            dict: Vec::new(),
            list: Vec::new(),
            other: 0,
        }
    }

    /// One operation from the input, checked against the model.
    fn step(&mut self, input: &mut Bytes<'_>) {
        let op = input.next();
        let (d, l) = (&self.dicts[self.other], &self.lists[self.other]);
        let at = |m: &Vec<(u8, u32)>, k: u8| m.iter().position(|e| e.0 == k);
        match op % 16 {
            0 | 1 => {
                let (k, v) = (input.next(), u32::from(input.next()) << 8 | u32::from(op));
                let got = allowed(d.insert(k, v), "insert");
                match at(&self.dict, k) {
                    Some(i) => {
                        assert_eq!(got, Some(Some(self.dict[i].1)));
                        self.dict[i].1 = v;
                    }
                    None if self.dict.len() == self.dict_cap => assert_eq!(got, None),
                    None => {
                        assert_eq!(got, Some(None));
                        self.dict.push((k, v));
                    }
                }
            }
            2 => {
                let k = input.next();
                let want = at(&self.dict, k).map(|i| self.dict.remove(i).1);
                assert_eq!(d.remove(&k).expect("remove"), want);
            }
            3 => {
                let k = input.next();
                assert_eq!(
                    d.get(&k).expect("get"),
                    at(&self.dict, k).map(|i| self.dict[i].1)
                );
                assert_eq!(
                    d.contains_key(&k).expect("contains"),
                    at(&self.dict, k).is_some()
                );
            }
            4 => {
                let k = input.next();
                let got = allowed(d.update(&k, |v| *v.get_or_insert(0) += 1), "update");
                match at(&self.dict, k) {
                    Some(i) => {
                        assert!(got.is_some());
                        self.dict[i].1 += 1;
                    }
                    None if self.dict.len() == self.dict_cap => assert!(got.is_none()),
                    None => self.dict.push((k, 1)),
                }
            }
            5 if op & 0x30 == 0 => {
                d.clear().expect("clear");
                self.dict.clear();
            }
            6 => {
                let v = u16::from(input.next());
                let got = allowed(l.push(v), "push");
                assert_eq!(got.is_some(), self.list.len() < self.list_cap);
                if got.is_some() {
                    self.list.push(v);
                }
            }
            7 => assert_eq!(l.pop().expect("pop"), self.list.pop()),
            8..=11 => {
                let (i, v) = (input.index(), u16::from(input.next()));
                let len = self.list.len() as i64;
                let pos = if i < 0 { i + len } else { i };
                let valid = (0..len).contains(&pos).then_some(pos as usize);
                match op % 16 {
                    8 => {
                        let got = allowed(l.get(i), "get");
                        assert_eq!(got, valid.map(|p| self.list[p]));
                    }
                    9 => {
                        let got = allowed(l.set(i, v), "set");
                        assert_eq!(got.is_some(), valid.is_some());
                        if let Some(p) = valid {
                            self.list[p] = v;
                        }
                    }
                    10 => {
                        let got = allowed(l.insert(i, v), "insert");
                        assert_eq!(got.is_some(), self.list.len() < self.list_cap);
                        if got.is_some() {
                            self.list.insert(pos.clamp(0, len) as usize, v);
                        }
                    }
                    _ => {
                        let got = allowed(l.remove(i), "remove");
                        assert_eq!(got, valid.map(|p| self.list.remove(p)));
                    }
                }
            }
            12 => {
                l.reverse().expect("reverse");
                self.list.reverse();
            }
            13 => {
                let n = usize::from(input.next() % 4);
                let items: Vec<u16> = (0..n as u16).map(|k| k + u16::from(op)).collect();
                let got = allowed(l.extend(items.iter().copied()), "extend");
                assert_eq!(got.is_some(), self.list.len() + n <= self.list_cap);
                if got.is_some() {
                    self.list.extend(items);
                }
            }
            14 if op & 0x30 == 0 => {
                l.clear().expect("clear");
                self.list.clear();
            }
            _ => self.other ^= 1,
        }
    }

    fn check(&self) {
        for (d, l) in self.dicts.iter().zip(&self.lists) {
            assert_eq!(d.len(), self.dict.len());
            assert_eq!(d.items().expect("items"), self.dict);
            assert_eq!(l.len(), self.list.len());
            assert_eq!(l.to_vec().expect("to_vec"), self.list);
        }
    }
}

/// Writes `bytes` at `offset` into the payload of the segment `name`, cut at its end.
fn patch(name: &str, offset: u64, bytes: &[u8]) {
    let info = mpshm::segments()
        .expect("segments")
        .into_iter()
        .find(|s| s.name == name)
        .expect("listed");
    let payload = info.size - info.count * 8;
    let at = payload + offset % (info.size - payload);
    let n = bytes.len().min((info.size - at) as usize);
    let file = OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm/{name}"))
        .expect("open the segment's file");
    file.write_all_at(&bytes[..n], at).expect("write");
}

/// Every operation once, on damaged containers: any result but a panic will do.
fn exercise(d: &Dict, l: &List) {
    let _ = d.insert(1, 2);
    let _ = d.get(&1);
    let _ = d.contains_key(&3);
    let _ = d.update(&4, |v| *v = v.map(|x| x.wrapping_add(1)));
    let _ = d.remove(&5);
    let _ = d.items();
    let _ = (d.len(), d.is_empty(), d.repairs(), format!("{d:?}"));
    let _ = l.push(1);
    let _ = l.get(-1);
    let _ = l.set(0, 2);
    let _ = l.insert(1, 3);
    let _ = l.remove(0);
    let _ = l.reverse();
    let _ = l.extend([4, 5]);
    let _ = l.pop();
    let _ = l.to_vec();
    let _ = (l.len(), l.is_empty(), l.repairs(), format!("{l:?}"));
}

/// Runs one input (format in the module docs) on fresh containers named `dn` and `ln`.
///
/// # Panics
///
/// When a container disagrees with the model, or an operation on damaged memory panics.
pub fn run(data: &[u8], dn: &str, ln: &str) {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    // Names left by a crashed earlier run with our pid.
    let _ = std::fs::remove_file(format!("/dev/shm/{dn}"));
    let _ = std::fs::remove_file(format!("/dev/shm/{ln}"));
    let dict_cap = usize::from(head >> 1 & 15) + 1;
    let list_cap = usize::from(head >> 5) + 1;
    {
        let mut world = World::new(dn, ln, dict_cap, list_cap);
        if head & 1 == 0 {
            let mut input = Bytes(rest);
            while !input.0.is_empty() {
                world.step(&mut input);
                assert_eq!(world.dicts[0].len(), world.dict.len());
                assert_eq!(world.lists[1].len(), world.list.len());
            }
            world.check();
        } else {
            let (fill, mut patches) = rest.split_at(rest.len().min(8));
            let mut input = Bytes(fill);
            while !input.0.is_empty() {
                world.step(&mut input);
            }
            while patches.len() >= 3 {
                let off = u16::from_le_bytes([patches[0], patches[1]]);
                let len = usize::from(patches[2] % 32).min(patches.len() - 3);
                let name = if off & 0x8000 == 0 { dn } else { ln };
                patch(name, u64::from(off & 0x7fff), &patches[3..3 + len]);
                patches = &patches[3 + len..];
            }
            let [d, d2] = &world.dicts;
            let [l, l2] = &world.lists;
            exercise(d, l);
            // A handle opened after the damage, too (opening may refuse it: fine).
            if let (Ok(d3), Ok(l3)) = (Dict::open(dn), List::open(ln)) {
                exercise(&d3, &l3);
            }
            d2.clear().expect("clear resets");
            l2.clear().expect("clear resets");
            for k in 0..dict_cap as u8 {
                d.insert(k, 1).expect("insert after clear");
            }
            for _ in 0..list_cap {
                l.push(1).expect("push after clear");
            }
            assert_eq!(d.len(), dict_cap);
            assert_eq!(l.to_vec().expect("to_vec"), vec![1; list_cap]);
        }
    }
    for n in [dn, ln] {
        assert!(
            !std::path::Path::new(&format!("/dev/shm/{n}")).exists(),
            "a container's name outlived its handles"
        );
    }
}
