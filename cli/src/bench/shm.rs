//! Plain shared memory for the floors and the start lines: a POSIX shared-memory file mapped in
//! each process, with no mpshm code in the way. The creator removes the name when dropped (the
//! children map it by name first: they report `ready` only once they have).

use std::fs::File;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use memmap2::MmapMut;
use rustix::fs::Mode;
use rustix::shm::OFlags;

use crate::kit::Res;

/// A mapping of a shared-memory file, its start aligned to a page.
#[derive(Debug)]
pub struct Page {
    map: MmapMut,
    /// The name, when this handle made it (and so removes it).
    owned: Option<String>,
}

impl Page {
    /// Creates a fresh shared-memory file of `len` bytes (zeroed) and maps it; its name is
    /// [`name`](Self::name).
    pub fn create(len: usize) -> Res<Page> {
        use std::sync::atomic::AtomicUsize;
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "mpshm-floor-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let fd = rustix::shm::open(
            name.as_str(),
            OFlags::CREATE | OFlags::EXCL | OFlags::RDWR,
            Mode::RUSR | Mode::WUSR,
        )?;
        let file = File::from(fd);
        let page = (|| -> Res<MmapMut> {
            // Allocated now, as mpshm's `reserve` does, so that no first touch of a page in
            // the timed window pays for it.
            rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, len as u64)?;
            // SAFETY: the file is ours, just made; other processes reach it only through the
            // protocols of this module's users, which touch it with atomics or under their own
            // synchronisation; no one truncates it.
            Ok(unsafe { MmapMut::map_mut(&file)? })
        })();
        match page {
            Ok(map) => Ok(Page {
                map,
                owned: Some(name),
            }),
            Err(e) => {
                let _ = rustix::shm::unlink(name.as_str());
                Err(e)
            }
        }
    }

    /// Maps the shared-memory file `name` made by [`create`](Self::create) in another process.
    pub fn open(name: &str) -> Res<Page> {
        let fd = rustix::shm::open(name, OFlags::RDWR, Mode::empty())?;
        let file = File::from(fd);
        // SAFETY: as in `create`: the file is the parent's, shared on the same terms.
        let map = unsafe { MmapMut::map_mut(&file)? };
        Ok(Page { map, owned: None })
    }

    /// The name to give a child.
    pub fn name(&self) -> &str {
        self.owned.as_deref().unwrap_or("")
    }

    /// The mapping's first byte.
    pub fn base(&self) -> *mut u8 {
        self.map.as_ptr().cast_mut()
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// The 64-bit word at `offset` (a multiple of 8, inside the mapping).
    pub fn u64_at(&self, offset: usize) -> &AtomicU64 {
        assert!(offset.is_multiple_of(8) && offset + 8 <= self.len());
        // SAFETY: in bounds and 8-aligned (checked; the mapping is page-aligned), valid for the
        // life of `self`; shared memory is only ever accessed atomically at this offset.
        unsafe { AtomicU64::from_ptr(self.base().add(offset).cast()) }
    }

    /// The 32-bit word at `offset` (a multiple of 4, inside the mapping).
    pub fn u32_at(&self, offset: usize) -> &AtomicU32 {
        assert!(offset.is_multiple_of(4) && offset + 4 <= self.len());
        // SAFETY: as in `u64_at`, for 4 bytes.
        unsafe { AtomicU32::from_ptr(self.base().add(offset).cast()) }
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        if let Some(name) = &self.owned {
            let _ = rustix::shm::unlink(name.as_str());
        }
    }
}

/// The start line of a two-process timed run, and where each process leaves its times: a page
/// of words, `[arrived, wall 0, wall 1, cpu 0, cpu 1]`.
#[derive(Debug)]
pub struct StartLine {
    pub page: Page,
}

impl StartLine {
    pub fn create() -> Res<StartLine> {
        Ok(StartLine {
            page: Page::create(4096)?,
        })
    }

    pub fn open(name: &str) -> Res<StartLine> {
        Ok(StartLine {
            page: Page::open(name)?,
        })
    }

    /// Waits (at most 20 s; `other_failed` is asked as it waits) until both processes have
    /// arrived, runs `work`, and stores this process's wall and CPU time under `slot` (0 or 1).
    pub fn run(
        &self,
        slot: usize,
        mut other_failed: impl FnMut() -> Res<()>,
        work: impl FnOnce() -> Res<()>,
    ) -> Res<()> {
        let arrived = self.page.u64_at(0);
        // AcqRel/Acquire: each process's setup happens before the other's timed work.
        arrived.fetch_add(1, Ordering::AcqRel);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut spins = 0u32;
        while arrived.load(Ordering::Acquire) < 2 {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(1024) {
                other_failed()?;
                if std::time::Instant::now() > deadline {
                    return Err("the other process never reached the start line".into());
                }
                std::thread::yield_now();
            }
            std::hint::spin_loop();
        }
        let start = std::time::Instant::now();
        let cpu = cpu_ns();
        work()?;
        let cpu = cpu_ns() - cpu;
        let wall = start.elapsed().as_nanos() as u64;
        self.page
            .u64_at(8 + 8 * slot)
            .store(wall.max(1), Ordering::Release);
        self.page
            .u64_at(24 + 8 * slot)
            .store(cpu, Ordering::Release);
        Ok(())
    }

    /// Both processes' `(wall, cpu)` nanoseconds, once both have run.
    pub fn times(&self) -> Res<[(u64, u64); 2]> {
        let t = [0, 1].map(|slot| {
            (
                self.page.u64_at(8 + 8 * slot).load(Ordering::Acquire),
                self.page.u64_at(24 + 8 * slot).load(Ordering::Acquire),
            )
        });
        if t.iter().any(|&(wall, _)| wall == 0) {
            return Err("a process did not report its times".into());
        }
        Ok(t)
    }
}

/// CPU time of this thread, in nanoseconds.
pub fn cpu_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}
