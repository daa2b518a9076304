//! The layout of everything that lives in shared memory, pinned to [`segment::VERSION`].
//!
//! Two builds of mpshm share a segment only if they agree on every structure in it and on every
//! protocol run over it; the header's layout version is how they find out, so any such change
//! must bump [`VERSION`]. The test here lists the size, alignment and field offsets of every
//! shared `#[repr(C)]` structure and the constants of their protocols (each module lists its own
//! in a `shared_layout` function, one [`pin!`] line per structure), and compares the listing with
//! the one recorded for the current version. A change without a bump fails it.
//!
//! A protocol can change without any size or offset changing (the seat-claiming protocol did):
//! such a change bumps the version by hand, and gets its row here too.
//!
//! [`segment::VERSION`]: crate::segment::VERSION
//! [`VERSION`]: crate::segment::VERSION

/// `pin!(Type { field, .. })`: one line naming `Type`'s size, alignment and the offset of each
/// field listed.
macro_rules! pin {
    ($ty:ty { $($field:tt),* $(,)? }) => {
        format!(
            "{} size {} align {}:{}",
            stringify!($ty),
            std::mem::size_of::<$ty>(),
            std::mem::align_of::<$ty>(),
            [$(format!(" {}@{}", stringify!($field), std::mem::offset_of!($ty, $field))),*]
                .concat()
        )
    };
}
pub(crate) use pin;

/// Every shared structure and protocol constant, one per line, each under its module's name.
fn listing() -> String {
    [
        ("segment", crate::segment::shared_layout()),
        ("ring", crate::ring::mpmc::shared_layout()),
        ("spsc", crate::ring::spsc::shared_layout()),
        ("spsc_queue", crate::spsc_queue::shared_layout()),
        ("queue", crate::queue::shared_layout()),
        ("attach", crate::attach::shared_layout()),
        ("pipe", crate::pipe::shared_layout()),
        ("containers", crate::containers::store::shared_layout()),
        ("sync", crate::sync::shared_layout()),
        ("process", crate::process::shared_layout()),
    ]
    .into_iter()
    .flat_map(|(module, lines)| lines.into_iter().map(move |l| format!("{module}::{l}")))
    .collect::<Vec<_>>()
    .join("\n")
}

/// What each layout version stands for, oldest first. Never edit what a row says: when the
/// listing changes (or a protocol does), bump `segment::VERSION` and add a row for it, pasting
/// the listing the failing test prints. The one edit allowed is a rename in the newest row that
/// moves no byte (every size, alignment and offset as before): the names are the code's, the
/// numbers are the contract. (The rings' `Misc` became `State` with one `EventCount` per
/// direction of waiting, and `Side` became `RoleBias`, on a branch cut while version 5 was the
/// newest: its row was so edited there, and version 6's when that branch was merged.)
const PINNED: &[(u32, &str)] = &[
    (4, V4),
    (5, V5),
    (6, V6),
    (7, V7),
    (8, V8),
    (9, V9),
    (10, V10),
];

/// Version 4: the seat-claiming protocol of `ring/bias.rs` takes a seat over through a
/// `CLAIMING` key (version 3 wrote the new owner's key at once, with no size changing), and
/// pipe ends, SPSC roles and a queue's producers and consumers are attachment records in tables
/// (`attach.rs`). The containers (kinds 11, 12) and the synchronisation family (13 to 17),
/// which came while the version was 3, are in the listing from here on.
const V4: &str = "\
segment::Header size 184 align 8: magic@0 version@8 kind@12 ready@16 header_size@20 total_size@24 lock_offset@32 payload_offset@40 elem_size@48 elem_align@56 count@64 creator_pid@72 tag_len@76 creator_start@80 params@88 tag@120\n\
segment::constants: magic 0xfe01006d6873706d, ready 0x5ead1e55, header 256 B, lock area 56 B (mutex 40 B, poison word at 48), tag 64 B; kinds 1=Value 2=RawValue 3=Array 4=RawArray 5=Lock 6=RLock 7=Queue 8=Pipe 9=JoinableQueue 10=SpscQueue 11=Dict 12=List 13=Semaphore 14=BoundedSemaphore 15=Event 16=Condition 17=Barrier\n\
segment::placement: value u64 Some((256, 312, 320)), array u32 x 3 Some((256, 312, 324)), queue 1 B x 100 align 128 Some((0, 256, 356))\n\
ring::RingCtl size 4992 align 128: head@0 tail@128 misc@256 putters@384 getters@2688\n\
ring::Padded<Index> size 128 align 128: 0@0\n\
ring::Index size 16 align 8: pos@0 last@8\n\
ring::Misc size 56 align 8: closed@0 get_epoch@4 get_waiters@8 put_epoch@12 put_waiters@16 join_epoch@20 join_waiters@24 no_bias@28 lost@32 delivered@40 done@48\n\
ring::slot word pos << 24 | state << 22 | pid (22 bits); FREE 0 FULL 1 WRITING 2 READING 3; slot_words(8) Some(8), slot_words(1024) Some(136)\n\
ring::bias::Side size 2304 align 128: bias@0 seatless@128 seats@256\n\
ring::bias::Seat size 40 align 8: key@0 start@8 inside@16 streak@20 taking@24 seen@32\n\
ring::bias::constants: 16 seats; UNBIASED 0x0 GRANTING 0x100000000 HELD 0x200000000 REVOKING 0x300000000 | seat; CLAIMING 0xffffffffffffffff; SEATLESS 0xffffffff\n\
spsc::SpscCtl size 384 align 128: head@0 tail@128 misc@256\n\
spsc::Misc size 32 align 8: closed@0 get_epoch@4 get_waiters@8 put_epoch@12 put_waiters@16 _reserved@20 lost@24\n\
spsc::slot word 0 = stamp(pos 5, len 9) 0x600000009\n\
spsc_queue::placement: roles table (producer 0, consumer 1) at 0, ring at 256\n\
queue::placement: ring at 0, slots at 4992, producers' and consumers' tables (of `attached` records) from Some(5248) for 4 x 8 B; params [capacity, max length, attached, 0]\n\
attach::TableHead size 64 align 64: ever@0 untracked@4\n\
attach::constants: record pid << 32 | start as u32; (armed, mutexes, total) of 2 records (80, 88, 256), of 32 (320, 448, 1792); at most 1024\n\
pipe::PipeCtl size 128 align 128: closed@0\n\
pipe::placement: ends table at 128, rings at 384 and 525056; 512 slots of 1008 B\n\
pipe::chunk header: 8 B, FIRST 0x8000000000000000 | length in a message's first, its offset in the others\n\
containers::control words: seq 0 state 1 len 2 tombs 3 free 4 fresh 5 stamp 6 repairs 7 of 8; entry header 16 B; index word EMPTY 0 TOMB 1 ID_BASE 2 low 0xffffffff; params [capacity, entry bytes, seed, codec]; plain codec 1\n\
containers::layouts: Dict 100 x 24 B: slots 256 stride 40 words Some(1025); List 100 x 24 B: slots 100 stride 40 words Some(713)\n\
sync::roster::Record size 16 align 8: owner@0 data@8\n\
sync::roster::constants: 256 records\n\
sync::semaphore::SemCtl size 64 align 8: seq@0 redo_valid@4 state@8 held@16 redo_record@24 redo_data@32 redo_state@40 redo_held@48 _reserved@56\n\
sync::semaphore::constants: NO_RECORD 0xffffffffffffffff; records at 64\n\
sync::event::EventCtl size 8 align 4: state@0 waiters@4\n\
sync::event::constants: FLAG 1; records at 64\n\
sync::barrier::BarrierCtl size 32 align 8: seq@0 _pad@4 state@8 history@16 cause@24\n\
sync::barrier::constants: BROKEN 0x80000000 COUNT 0x7fffffff PARTY 1; records at 64\n\
sync::condition::CondCtl size 64 align 8: tickets@0 high@8 _pad@12 name@16 _reserved@48\n\
sync::condition::Slot size 32 align 8: state@0 _pad@4 ticket@8 mark@16 owner@24\n\
sync::condition::constants: FREE 0 WAITING 1 NOTIFIED 2 LEFT 3; slots at 64, then records";

/// Version 5: the synchronisation family keeps its per-process records in `attach.rs`'s
/// tables (the roster is gone), with a `deaths` word in each control block.
const V5: &str = "\
segment::Header size 184 align 8: magic@0 version@8 kind@12 ready@16 header_size@20 total_size@24 lock_offset@32 payload_offset@40 elem_size@48 elem_align@56 count@64 creator_pid@72 tag_len@76 creator_start@80 params@88 tag@120\n\
segment::constants: magic 0xfe01006d6873706d, ready 0x5ead1e55, header 256 B, lock area 56 B (mutex 40 B, poison word at 48), tag 64 B; kinds 1=Value 2=RawValue 3=Array 4=RawArray 5=Lock 6=RLock 7=Queue 8=Pipe 9=JoinableQueue 10=SpscQueue 11=Dict 12=List 13=Semaphore 14=BoundedSemaphore 15=Event 16=Condition 17=Barrier\n\
segment::placement: value u64 Some((256, 312, 320)), array u32 x 3 Some((256, 312, 324)), queue 1 B x 100 align 128 Some((0, 256, 356))\n\
ring::RingCtl size 4992 align 128: head@0 tail@128 state@256 producers@384 consumers@2688\n\
ring::Padded<Index> size 128 align 128: 0@0\n\
ring::Index size 16 align 8: pos@0 last@8\n\
ring::State size 56 align 8: closed@0 get@4 put@12 join@20 no_bias@28 lost@32 delivered@40 done@48\n\
ring::EventCount size 8 align 4: epoch@0 waiters@4\n\
ring::slot word pos << 24 | state << 22 | pid (22 bits); FREE 0 FULL 1 WRITING 2 READING 3; slot_words(8) Some(8), slot_words(1024) Some(136)\n\
ring::bias::RoleBias size 2304 align 128: bias@0 seatless@128 seats@256\n\
ring::bias::Seat size 40 align 8: key@0 start@8 inside@16 streak@20 taking@24 seen@32\n\
ring::bias::constants: 16 seats; UNBIASED 0x0 GRANTING 0x100000000 HELD 0x200000000 REVOKING 0x300000000 | seat; CLAIMING 0xffffffffffffffff; SEATLESS 0xffffffff\n\
spsc::SpscCtl size 384 align 128: head@0 tail@128 state@256\n\
spsc::State size 32 align 8: closed@0 get@4 put@12 _reserved@20 lost@24\n\
spsc::slot word 0 = stamp(pos 5, len 9) 0x600000009\n\
spsc_queue::placement: roles table (producer 0, consumer 1) at 0, ring at 256\n\
queue::placement: ring at 0, slots at 4992, producers' and consumers' tables (of `attached` records) from Some(5248) for 4 x 8 B; params [capacity, max length, attached, 0]\n\
attach::TableHead size 64 align 64: ever@0 untracked@4\n\
attach::constants: record pid << 32 | start as u32; (armed, mutexes, total) of 2 records (80, 88, 256), of 32 (320, 448, 1792); at most 1024\n\
pipe::PipeCtl size 128 align 128: closed@0\n\
pipe::placement: ends table at 128, rings at 384 and 525056; 512 slots of 1008 B\n\
pipe::chunk header: 8 B, FIRST 0x8000000000000000 | length in a message's first, its offset in the others\n\
containers::control words: seq 0 state 1 len 2 tombs 3 free 4 fresh 5 stamp 6 repairs 7 of 8; entry header 16 B; index word EMPTY 0 TOMB 1 ID_BASE 2 low 0xffffffff; params [capacity, entry bytes, seed, codec]; plain codec 1\n\
containers::layouts: Dict 100 x 24 B: slots 256 stride 40 words Some(1025); List 100 x 24 B: slots 100 stride 40 words Some(713)\n\
sync::semaphore::SemCtl size 64 align 8: seq@0 redo_valid@4 state@8 held@16 redo_record@24 redo_data@32 redo_state@40 redo_held@48 deaths@56 _pad@60\n\
sync::semaphore::constants: NO_RECORD 0xffffffffffffffff; record words, then the table, at 64\n\
sync::event::EventCtl size 12 align 4: state@0 waiters@4 deaths@8\n\
sync::event::constants: FLAG 1; the table at 64\n\
sync::barrier::BarrierCtl size 32 align 8: seq@0 deaths@4 state@8 history@16 cause@24\n\
sync::barrier::constants: BROKEN 0x80000000 COUNT 0x7fffffff PARTY 1; record words, then the table, at 64\n\
sync::condition::CondCtl size 64 align 8: tickets@0 high@8 deaths@12 name@16 _reserved@48\n\
sync::condition::Slot size 32 align 8: state@0 record@4 ticket@8 mark@16 owner@24\n\
sync::condition::constants: FREE 0 WAITING 1 NOTIFIED 2 LEFT 3; slots at 64, then the table";

/// Version 6: the header records the identity of the type a segment holds (its size,
/// alignment, layout hash and field description, after the tag); a queue's `params[3]` names
/// its codec; a pipe message's first chunk header carries the type id of a typed message.
const V6: &str = "\
segment::Header size 256 align 8: magic@0 version@8 kind@12 ready@16 header_size@20 total_size@24 lock_offset@32 payload_offset@40 elem_size@48 elem_align@56 count@64 creator_pid@72 tag_len@76 creator_start@80 params@88 tag@120 type_size@184 type_align@188 layout@192 fields@200\n\
segment::constants: magic 0xfe01006d6873706d, ready 0x5ead1e55, header 256 B, lock area 56 B (mutex 40 B, poison word at 48), tag 64 B, fields 56 B; kinds 1=Value 2=RawValue 3=Array 4=RawArray 5=Lock 6=RLock 7=Queue 8=Pipe 9=JoinableQueue 10=SpscQueue 11=Dict 12=List 13=Semaphore 14=BoundedSemaphore 15=Event 16=Condition 17=Barrier\n\
segment::placement: value u64 Some((256, 312, 320)), array u32 x 3 Some((256, 312, 324)), queue 1 B x 100 align 128 Some((0, 256, 356))\n\
ring::RingCtl size 4992 align 128: head@0 tail@128 state@256 producers@384 consumers@2688\n\
ring::Padded<Index> size 128 align 128: 0@0\n\
ring::Index size 16 align 8: pos@0 last@8\n\
ring::State size 56 align 8: closed@0 get@4 put@12 join@20 no_bias@28 lost@32 delivered@40 done@48\n\
ring::EventCount size 8 align 4: epoch@0 waiters@4\n\
ring::slot word pos << 24 | state << 22 | pid (22 bits); FREE 0 FULL 1 WRITING 2 READING 3; slot_words(8) Some(8), slot_words(1024) Some(136)\n\
ring::bias::RoleBias size 2304 align 128: bias@0 seatless@128 seats@256\n\
ring::bias::Seat size 40 align 8: key@0 start@8 inside@16 streak@20 taking@24 seen@32\n\
ring::bias::constants: 16 seats; UNBIASED 0x0 GRANTING 0x100000000 HELD 0x200000000 REVOKING 0x300000000 | seat; CLAIMING 0xffffffffffffffff; SEATLESS 0xffffffff\n\
spsc::SpscCtl size 384 align 128: head@0 tail@128 state@256\n\
spsc::State size 32 align 8: closed@0 get@4 put@12 _reserved@20 lost@24\n\
spsc::slot word 0 = stamp(pos 5, len 9) 0x600000009\n\
spsc_queue::placement: roles table (producer 0, consumer 1) at 0, ring at 256\n\
queue::placement: ring at 0, slots at 4992, producers' and consumers' tables (of `attached` records) from Some(5248) for 4 x 8 B; params [capacity, max length, attached, codec]\n\
attach::TableHead size 64 align 64: ever@0 untracked@4\n\
attach::constants: record pid << 32 | start as u32; (armed, mutexes, total) of 2 records (80, 88, 256), of 32 (320, 448, 1792); at most 1024\n\
pipe::PipeCtl size 128 align 128: closed@0\n\
pipe::placement: ends table at 128, rings at 384 and 525056; 512 slots of 1008 B\n\
pipe::chunk header: 8 B, FIRST 0x8000000000000000 | type id << 31 | length in a message's first (type id 0: bytes), its offset in the others\n\
containers::control words: seq 0 state 1 len 2 tombs 3 free 4 fresh 5 stamp 6 repairs 7 of 8; entry header 16 B; index word EMPTY 0 TOMB 1 ID_BASE 2 low 0xffffffff; params [capacity, entry bytes, seed, codec]; plain codec 1\n\
containers::layouts: Dict 100 x 24 B: slots 256 stride 40 words Some(1025); List 100 x 24 B: slots 100 stride 40 words Some(713)\n\
sync::semaphore::SemCtl size 64 align 8: seq@0 redo_valid@4 state@8 held@16 redo_record@24 redo_data@32 redo_state@40 redo_held@48 deaths@56 _pad@60\n\
sync::semaphore::constants: NO_RECORD 0xffffffffffffffff; record words, then the table, at 64\n\
sync::event::EventCtl size 12 align 4: state@0 waiters@4 deaths@8\n\
sync::event::constants: FLAG 1; the table at 64\n\
sync::barrier::BarrierCtl size 32 align 8: seq@0 deaths@4 state@8 history@16 cause@24\n\
sync::barrier::constants: BROKEN 0x80000000 COUNT 0x7fffffff PARTY 1; record words, then the table, at 64\n\
sync::condition::CondCtl size 64 align 8: tickets@0 high@8 deaths@12 name@16 _reserved@48\n\
sync::condition::Slot size 32 align 8: state@0 record@4 ticket@8 mark@16 owner@24\n\
sync::condition::constants: FREE 0 WAITING 1 NOTIFIED 2 LEFT 3; slots at 64, then the table";

/// Version 7: an eventcount's `waiters` word holds a sleepy credit in its high bits beside the
/// count of sleepers (`wait/eventcount.rs`): while there is credit, sleepers and wakers run full
/// fences instead of the sleeper's `membarrier`. An older build would miss the credit and skip
/// the waker's fence.
const V7: &str = "\
segment::Header size 256 align 8: magic@0 version@8 kind@12 ready@16 header_size@20 total_size@24 lock_offset@32 payload_offset@40 elem_size@48 elem_align@56 count@64 creator_pid@72 tag_len@76 creator_start@80 params@88 tag@120 type_size@184 type_align@188 layout@192 fields@200\n\
segment::constants: magic 0xfe01006d6873706d, ready 0x5ead1e55, header 256 B, lock area 56 B (mutex 40 B, poison word at 48), tag 64 B, fields 56 B; kinds 1=Value 2=RawValue 3=Array 4=RawArray 5=Lock 6=RLock 7=Queue 8=Pipe 9=JoinableQueue 10=SpscQueue 11=Dict 12=List 13=Semaphore 14=BoundedSemaphore 15=Event 16=Condition 17=Barrier\n\
segment::placement: value u64 Some((256, 312, 320)), array u32 x 3 Some((256, 312, 324)), queue 1 B x 100 align 128 Some((0, 256, 356))\n\
ring::RingCtl size 4992 align 128: head@0 tail@128 state@256 producers@384 consumers@2688\n\
ring::Padded<Index> size 128 align 128: 0@0\n\
ring::Index size 16 align 8: pos@0 last@8\n\
ring::State size 56 align 8: closed@0 get@4 put@12 join@20 no_bias@28 lost@32 delivered@40 done@48\n\
ring::EventCount size 8 align 4: epoch@0 waiters@4; waiters: count 0xfffff credit 0xfff00000 (sleepy mode)\n\
ring::slot word pos << 24 | state << 22 | pid (22 bits); FREE 0 FULL 1 WRITING 2 READING 3; slot_words(8) Some(8), slot_words(1024) Some(136)\n\
ring::bias::RoleBias size 2304 align 128: bias@0 seatless@128 seats@256\n\
ring::bias::Seat size 40 align 8: key@0 start@8 inside@16 streak@20 taking@24 seen@32\n\
ring::bias::constants: 16 seats; UNBIASED 0x0 GRANTING 0x100000000 HELD 0x200000000 REVOKING 0x300000000 | seat; CLAIMING 0xffffffffffffffff; SEATLESS 0xffffffff\n\
spsc::SpscCtl size 384 align 128: head@0 tail@128 state@256\n\
spsc::State size 32 align 8: closed@0 get@4 put@12 _reserved@20 lost@24\n\
spsc::slot word 0 = stamp(pos 5, len 9) 0x600000009\n\
spsc_queue::placement: roles table (producer 0, consumer 1) at 0, ring at 256\n\
queue::placement: ring at 0, slots at 4992, producers' and consumers' tables (of `attached` records) from Some(5248) for 4 x 8 B; params [capacity, max length, attached, codec]\n\
attach::TableHead size 64 align 64: ever@0 untracked@4\n\
attach::constants: record pid << 32 | start as u32; (armed, mutexes, total) of 2 records (80, 88, 256), of 32 (320, 448, 1792); at most 1024\n\
pipe::PipeCtl size 128 align 128: closed@0\n\
pipe::placement: ends table at 128, rings at 384 and 525056; 512 slots of 1008 B\n\
pipe::chunk header: 8 B, FIRST 0x8000000000000000 | type id << 31 | length in a message's first (type id 0: bytes), its offset in the others\n\
containers::control words: seq 0 state 1 len 2 tombs 3 free 4 fresh 5 stamp 6 repairs 7 of 8; entry header 16 B; index word EMPTY 0 TOMB 1 ID_BASE 2 low 0xffffffff; params [capacity, entry bytes, seed, codec]; plain codec 1\n\
containers::layouts: Dict 100 x 24 B: slots 256 stride 40 words Some(1025); List 100 x 24 B: slots 100 stride 40 words Some(713)\n\
sync::semaphore::SemCtl size 64 align 8: seq@0 redo_valid@4 state@8 held@16 redo_record@24 redo_data@32 redo_state@40 redo_held@48 deaths@56 _pad@60\n\
sync::semaphore::constants: NO_RECORD 0xffffffffffffffff; record words, then the table, at 64\n\
sync::event::EventCtl size 12 align 4: state@0 waiters@4 deaths@8\n\
sync::event::constants: FLAG 1; the table at 64\n\
sync::barrier::BarrierCtl size 32 align 8: seq@0 deaths@4 state@8 history@16 cause@24\n\
sync::barrier::constants: BROKEN 0x80000000 COUNT 0x7fffffff PARTY 1; record words, then the table, at 64\n\
sync::condition::CondCtl size 64 align 8: tickets@0 high@8 deaths@12 name@16 _reserved@48\n\
sync::condition::Slot size 32 align 8: state@0 record@4 ticket@8 mark@16 owner@24\n\
sync::condition::constants: FREE 0 WAITING 1 NOTIFIED 2 LEFT 3; slots at 64, then the table";

/// Version 8: a locked payload (`Value`, `Array`) starts on the cache line after its lock area,
/// not right after the poison word on the lock's own line (`segment::place`).
const V8: &str = "\
segment::Header size 256 align 8: magic@0 version@8 kind@12 ready@16 header_size@20 total_size@24 lock_offset@32 payload_offset@40 elem_size@48 elem_align@56 count@64 creator_pid@72 tag_len@76 creator_start@80 params@88 tag@120 type_size@184 type_align@188 layout@192 fields@200\n\
segment::constants: magic 0xfe01006d6873706d, ready 0x5ead1e55, header 256 B, lock area 56 B (mutex 40 B, poison word at 48), tag 64 B, fields 56 B; kinds 1=Value 2=RawValue 3=Array 4=RawArray 5=Lock 6=RLock 7=Queue 8=Pipe 9=JoinableQueue 10=SpscQueue 11=Dict 12=List 13=Semaphore 14=BoundedSemaphore 15=Event 16=Condition 17=Barrier\n\
segment::placement: value u64 Some((256, 320, 328)), array u32 x 3 Some((256, 320, 332)), queue 1 B x 100 align 128 Some((0, 256, 356))\n\
ring::RingCtl size 4992 align 128: head@0 tail@128 state@256 producers@384 consumers@2688\n\
ring::Padded<Index> size 128 align 128: 0@0\n\
ring::Index size 16 align 8: pos@0 last@8\n\
ring::State size 56 align 8: closed@0 get@4 put@12 join@20 no_bias@28 lost@32 delivered@40 done@48\n\
ring::EventCount size 8 align 4: epoch@0 waiters@4; waiters: count 0xfffff credit 0xfff00000 (sleepy mode)\n\
ring::slot word pos << 24 | state << 22 | pid (22 bits); FREE 0 FULL 1 WRITING 2 READING 3; slot_words(8) Some(8), slot_words(1024) Some(136)\n\
ring::bias::RoleBias size 2304 align 128: bias@0 seatless@128 seats@256\n\
ring::bias::Seat size 40 align 8: key@0 start@8 inside@16 streak@20 taking@24 seen@32\n\
ring::bias::constants: 16 seats; UNBIASED 0x0 GRANTING 0x100000000 HELD 0x200000000 REVOKING 0x300000000 | seat; CLAIMING 0xffffffffffffffff; SEATLESS 0xffffffff\n\
spsc::SpscCtl size 384 align 128: head@0 tail@128 state@256\n\
spsc::State size 32 align 8: closed@0 get@4 put@12 _reserved@20 lost@24\n\
spsc::slot word 0 = stamp(pos 5, len 9) 0x600000009\n\
spsc_queue::placement: roles table (producer 0, consumer 1) at 0, ring at 256\n\
queue::placement: ring at 0, slots at 4992, producers' and consumers' tables (of `attached` records) from Some(5248) for 4 x 8 B; params [capacity, max length, attached, codec]\n\
attach::TableHead size 64 align 64: ever@0 untracked@4\n\
attach::constants: record pid << 32 | start as u32; (armed, mutexes, total) of 2 records (80, 88, 256), of 32 (320, 448, 1792); at most 1024\n\
pipe::PipeCtl size 128 align 128: closed@0\n\
pipe::placement: ends table at 128, rings at 384 and 525056; 512 slots of 1008 B\n\
pipe::chunk header: 8 B, FIRST 0x8000000000000000 | type id << 31 | length in a message's first (type id 0: bytes), its offset in the others\n\
containers::control words: seq 0 state 1 len 2 tombs 3 free 4 fresh 5 stamp 6 repairs 7 of 8; entry header 16 B; index word EMPTY 0 TOMB 1 ID_BASE 2 low 0xffffffff; params [capacity, entry bytes, seed, codec]; plain codec 1\n\
containers::layouts: Dict 100 x 24 B: slots 256 stride 40 words Some(1025); List 100 x 24 B: slots 100 stride 40 words Some(713)\n\
sync::semaphore::SemCtl size 64 align 8: seq@0 redo_valid@4 state@8 held@16 redo_record@24 redo_data@32 redo_state@40 redo_held@48 deaths@56 _pad@60\n\
sync::semaphore::constants: NO_RECORD 0xffffffffffffffff; record words, then the table, at 64\n\
sync::event::EventCtl size 12 align 4: state@0 waiters@4 deaths@8\n\
sync::event::constants: FLAG 1; the table at 64\n\
sync::barrier::BarrierCtl size 32 align 8: seq@0 deaths@4 state@8 history@16 cause@24\n\
sync::barrier::constants: BROKEN 0x80000000 COUNT 0x7fffffff PARTY 1; record words, then the table, at 64\n\
sync::condition::CondCtl size 64 align 8: tickets@0 high@8 deaths@12 name@16 _reserved@48\n\
sync::condition::Slot size 32 align 8: state@0 record@4 ticket@8 mark@16 owner@24\n\
sync::condition::constants: FREE 0 WAITING 1 NOTIFIED 2 LEFT 3; slots at 64, then the table";

/// Version 9: version 8's layout; the rings' protocol changed: a put stores a slot's length
/// word only when the length differs from what the slot holds, and a wake that finds sleepy
/// credit but no sleeper spends all of it (`ring/mpmc.rs`, `wait/eventcount.rs`). Both work with
/// a version 8 peer, but the rule is one version per protocol.
const V9: &str = V8;

/// Version 10: a process's argument and result travel in a mailbox (`process/channel.rs`), a
/// `RawArray` of bytes with a state word, instead of a queue of one message.
const V10: &str = "\
segment::Header size 256 align 8: magic@0 version@8 kind@12 ready@16 header_size@20 total_size@24 lock_offset@32 payload_offset@40 elem_size@48 elem_align@56 count@64 creator_pid@72 tag_len@76 creator_start@80 params@88 tag@120 type_size@184 type_align@188 layout@192 fields@200\n\
segment::constants: magic 0xfe01006d6873706d, ready 0x5ead1e55, header 256 B, lock area 56 B (mutex 40 B, poison word at 48), tag 64 B, fields 56 B; kinds 1=Value 2=RawValue 3=Array 4=RawArray 5=Lock 6=RLock 7=Queue 8=Pipe 9=JoinableQueue 10=SpscQueue 11=Dict 12=List 13=Semaphore 14=BoundedSemaphore 15=Event 16=Condition 17=Barrier\n\
segment::placement: value u64 Some((256, 320, 328)), array u32 x 3 Some((256, 320, 332)), queue 1 B x 100 align 128 Some((0, 256, 356))\n\
ring::RingCtl size 4992 align 128: head@0 tail@128 state@256 producers@384 consumers@2688\n\
ring::Padded<Index> size 128 align 128: 0@0\n\
ring::Index size 16 align 8: pos@0 last@8\n\
ring::State size 56 align 8: closed@0 get@4 put@12 join@20 no_bias@28 lost@32 delivered@40 done@48\n\
ring::EventCount size 8 align 4: epoch@0 waiters@4; waiters: count 0xfffff credit 0xfff00000 (sleepy mode)\n\
ring::slot word pos << 24 | state << 22 | pid (22 bits); FREE 0 FULL 1 WRITING 2 READING 3; slot_words(8) Some(8), slot_words(1024) Some(136)\n\
ring::bias::RoleBias size 2304 align 128: bias@0 seatless@128 seats@256\n\
ring::bias::Seat size 40 align 8: key@0 start@8 inside@16 streak@20 taking@24 seen@32\n\
ring::bias::constants: 16 seats; UNBIASED 0x0 GRANTING 0x100000000 HELD 0x200000000 REVOKING 0x300000000 | seat; CLAIMING 0xffffffffffffffff; SEATLESS 0xffffffff\n\
spsc::SpscCtl size 384 align 128: head@0 tail@128 state@256\n\
spsc::State size 32 align 8: closed@0 get@4 put@12 _reserved@20 lost@24\n\
spsc::slot word 0 = stamp(pos 5, len 9) 0x600000009\n\
spsc_queue::placement: roles table (producer 0, consumer 1) at 0, ring at 256\n\
queue::placement: ring at 0, slots at 4992, producers' and consumers' tables (of `attached` records) from Some(5248) for 4 x 8 B; params [capacity, max length, attached, codec]\n\
attach::TableHead size 64 align 64: ever@0 untracked@4\n\
attach::constants: record pid << 32 | start as u32; (armed, mutexes, total) of 2 records (80, 88, 256), of 32 (320, 448, 1792); at most 1024\n\
pipe::PipeCtl size 128 align 128: closed@0\n\
pipe::placement: ends table at 128, rings at 384 and 525056; 512 slots of 1008 B\n\
pipe::chunk header: 8 B, FIRST 0x8000000000000000 | type id << 31 | length in a message's first (type id 0: bytes), its offset in the others\n\
containers::control words: seq 0 state 1 len 2 tombs 3 free 4 fresh 5 stamp 6 repairs 7 of 8; entry header 16 B; index word EMPTY 0 TOMB 1 ID_BASE 2 low 0xffffffff; params [capacity, entry bytes, seed, codec]; plain codec 1\n\
containers::layouts: Dict 100 x 24 B: slots 256 stride 40 words Some(1025); List 100 x 24 B: slots 100 stride 40 words Some(713)\n\
sync::semaphore::SemCtl size 64 align 8: seq@0 redo_valid@4 state@8 held@16 redo_record@24 redo_data@32 redo_state@40 redo_held@48 deaths@56 _pad@60\n\
sync::semaphore::constants: NO_RECORD 0xffffffffffffffff; record words, then the table, at 64\n\
sync::event::EventCtl size 12 align 4: state@0 waiters@4 deaths@8\n\
sync::event::constants: FLAG 1; the table at 64\n\
sync::barrier::BarrierCtl size 32 align 8: seq@0 deaths@4 state@8 history@16 cause@24\n\
sync::barrier::constants: BROKEN 0x80000000 COUNT 0x7fffffff PARTY 1; record words, then the table, at 64\n\
sync::condition::CondCtl size 64 align 8: tickets@0 high@8 deaths@12 name@16 _reserved@48\n\
sync::condition::Slot size 32 align 8: state@0 record@4 ticket@8 mark@16 owner@24\n\
sync::condition::constants: FREE 0 WAITING 1 NOTIFIED 2 LEFT 3; slots at 64, then the table\n\
process::mailbox: RawArray of bytes tagged mpshm::process::Mailbox; state u32 at 0 (EMPTY 0x0, FULL 0x4d41494c), length u64 at 8, message at 16";

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[test]
fn shared_layout_is_pinned_to_the_version() {
    use crate::segment::VERSION;
    assert!(
        PINNED.windows(2).all(|w| w[0].0 < w[1].0),
        "the rows must be in version order, one per version"
    );
    let &(version, pinned) = PINNED.last().expect("a row");
    let now = listing();
    if now != pinned {
        let changed: Vec<String> = now
            .lines()
            .filter(|l| !pinned.lines().any(|p| p == *l))
            .map(|l| format!("  now:    {l}"))
            .chain(
                pinned
                    .lines()
                    .filter(|p| !now.lines().any(|l| l == *p))
                    .map(|p| format!("  pinned: {p}")),
            )
            .collect();
        panic!(
            "the shared layout differs from the one pinned for version {version}:\n{}\n\
             bump segment::VERSION and add a row for it with this listing:\n{now}",
            changed.join("\n")
        );
    }
    assert_eq!(
        version, VERSION,
        "segment::VERSION is {VERSION}, but the newest pinned layout is version {version}'s: \
         add a row for {VERSION} (the listing is unchanged, so a protocol changed)"
    );
}
