use super::*;

#[derive(Debug)]
struct Fake {
    id: u32,
    clean: bool,
    created: Instant,
    last_used: Instant,
}

impl PoolConn for Fake {
    fn is_clean(&self) -> bool {
        self.clean
    }
    fn created(&self) -> Instant {
        self.created
    }
    fn last_used(&self) -> Instant {
        self.last_used
    }
}

fn fake(id: u32) -> Fake {
    let now = Instant::now();
    Fake {
        id,
        clean: true,
        created: now,
        last_used: now,
    }
}

fn later() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

fn ago(seconds: u64) -> Instant {
    Instant::now()
        .checked_sub(Duration::from_secs(seconds))
        .unwrap_or_else(Instant::now)
}

/// Opens a connection `id` through a free place, as a checkout would.
fn open(slots: &Arc<Slots<Fake>>, id: u32) -> Lent<Fake> {
    match slots.take(later()) {
        Take::Now(Grant::Open(slot)) => slot.fill(fake(id)),
        _ => panic!("expected a free place"),
    }
}

fn queued(slots: &Arc<Slots<Fake>>) -> oneshot::Receiver<Grant<Fake>> {
    match slots.take(later()) {
        Take::Queued(receiver) => receiver,
        _ => panic!("expected to queue"),
    }
}

fn received(mut receiver: oneshot::Receiver<Grant<Fake>>) -> Grant<Fake> {
    receiver.try_recv().expect("a grant was sent")
}

fn lent_id(grant: Grant<Fake>) -> (u32, Lent<Fake>) {
    match grant {
        Grant::Conn(lent) => (lent.conn.id, lent),
        _ => panic!("expected a connection"),
    }
}

fn occupancy(open: u32, idle: u32, waiting: u32) -> Occupancy {
    Occupancy {
        open,
        idle,
        waiting,
    }
}

#[test]
fn places_are_handed_out_up_to_the_size_then_clients_queue() {
    let slots = Slots::new(2, None);
    let _a = open(&slots, 1);
    let _b = open(&slots, 2);
    let _wait = queued(&slots);
    assert_eq!(slots.occupancy(), occupancy(2, 0, 1));
}

#[test]
fn a_returned_connection_goes_to_the_longest_waiting_client_in_order() {
    let slots = Slots::new(2, None);
    let a = open(&slots, 1);
    let b = open(&slots, 2);
    let first = queued(&slots);
    let second = queued(&slots);
    b.give_back();
    a.give_back();
    let (first_id, _x) = lent_id(received(first));
    let (second_id, _y) = lent_id(received(second));
    assert_eq!((first_id, second_id), (2, 1));
    assert_eq!(
        slots.occupancy(),
        occupancy(2, 0, 0),
        "handed over, never idle"
    );
}

#[test]
fn a_clean_connection_nobody_waits_for_is_reused_newest_first() {
    let slots = Slots::new(3, None);
    let a = open(&slots, 1);
    let b = open(&slots, 2);
    a.give_back();
    b.give_back();
    assert_eq!(slots.occupancy(), occupancy(2, 2, 0));
    let Take::Now(grant) = slots.take(later()) else {
        panic!("an idle connection is available");
    };
    assert_eq!(lent_id(grant).0, 2);
}

#[test]
fn a_dirty_connection_is_closed_and_its_place_goes_to_a_waiter() {
    let slots = Slots::new(1, None);
    let mut a = open(&slots, 1);
    let wait = queued(&slots);
    a.conn.clean = false;
    a.give_back();
    let grant = received(wait);
    assert!(matches!(grant, Grant::Open(_)));
    assert_eq!(
        slots.occupancy(),
        occupancy(1, 0, 0),
        "the waiter holds the place"
    );
    drop(grant);
    assert_eq!(
        slots.occupancy(),
        occupancy(0, 0, 0),
        "unused, the place is free again"
    );
}

#[test]
fn dropping_a_borrowed_connection_frees_its_place() {
    let slots = Slots::new(1, None);
    let a = open(&slots, 1);
    drop(a);
    assert_eq!(slots.occupancy(), occupancy(0, 0, 0));
    let _again = open(&slots, 2);
}

#[test]
fn clients_that_gave_up_are_skipped() {
    let slots = Slots::new(1, None);
    let a = open(&slots, 1);
    drop(queued(&slots));
    let live = queued(&slots);
    a.give_back();
    assert_eq!(lent_id(received(live)).0, 1);

    // Nobody live waits: the connection stays idle and its place held.
    let slots = Slots::new(1, None);
    let a = open(&slots, 1);
    drop(queued(&slots));
    a.give_back();
    assert_eq!(slots.occupancy(), occupancy(1, 1, 0));
}

#[test]
fn a_grant_dropped_unread_frees_its_place() {
    let slots = Slots::new(1, None);
    let a = open(&slots, 1);
    let wait = queued(&slots);
    a.give_back();
    drop(wait);
    assert_eq!(slots.occupancy(), occupancy(0, 0, 0));
}

#[test]
fn an_unused_free_place_passes_to_the_next_waiter() {
    let slots = Slots::new(1, None);
    let a = open(&slots, 1);
    let first = queued(&slots);
    let second = queued(&slots);
    drop(a);
    let Grant::Open(place) = received(first) else {
        panic!("expected a place");
    };
    drop(place);
    assert!(matches!(received(second), Grant::Open(_)));
}

#[test]
fn a_connect_failure_reaches_every_waiter() {
    let slots = Slots::new(1, None);
    let _a = open(&slots, 1);
    let waits = [queued(&slots), queued(&slots)];
    let failure = ConnectFailure {
        sqlstate: "08006",
        message: "down".into(),
    };
    slots.fail_waiters(&failure);
    for wait in waits {
        assert!(matches!(received(wait), Grant::Failed(f) if f == failure));
    }
    assert_eq!(slots.occupancy(), occupancy(1, 0, 0));
}

#[test]
fn connections_past_their_lifetime_are_not_reused() {
    let slots = Slots::new(1, Some(Duration::from_secs(60)));
    let mut a = open(&slots, 1);
    a.conn.created = ago(61);
    a.give_back();
    assert_eq!(slots.occupancy(), occupancy(0, 0, 0));
}

#[test]
fn reaping_closes_idle_and_old_connections_but_keeps_the_warm_minimum() {
    let slots = Slots::new(4, Some(Duration::from_secs(60)));
    let lent: Vec<_> = (1..=4).map(|id| open(&slots, id)).collect();
    for mut a in lent {
        a.conn.last_used = ago(u64::from(20 - a.conn.id));
        if a.conn.id == 4 {
            a.conn.created = ago(61);
        }
        // Given back directly into the idle list: bypass the lifetime check of give_back.
        a.slot.keep_idle(a.conn);
    }
    let reaped = slots.reap(Instant::now(), Some(Duration::from_secs(10)), 1);
    let mut ids: Vec<u32> = reaped.iter().map(|c| c.id).collect();
    ids.sort_unstable();
    // 4 is past its lifetime; of 1..=3 (idle 19, 18, 17 s), the warmest (3) is kept.
    assert_eq!(ids, vec![1, 2, 4]);
    assert_eq!(slots.occupancy(), occupancy(1, 1, 0));
}

#[test]
fn a_free_place_for_warming_exists_only_below_the_size() {
    let slots = Slots::new(1, None);
    let place = slots.take_free_place().expect("one free place");
    assert!(slots.take_free_place().is_none());
    place.keep_idle(fake(1));
    assert_eq!(slots.occupancy(), occupancy(1, 1, 0));
}

#[test]
fn waits_end_at_their_deadline_head_first() {
    let slots = Slots::new(1, None);
    let _a = open(&slots, 1);
    let now = Instant::now();
    let (soon, late) = (now + Duration::from_secs(1), now + Duration::from_secs(2));
    let first = match slots.take(soon) {
        Take::Queued(receiver) => receiver,
        _ => panic!("expected to queue"),
    };
    let second = match slots.take(late) {
        Take::Queued(receiver) => receiver,
        _ => panic!("expected to queue"),
    };
    assert_eq!(slots.expire(now), Some(soon), "nothing due yet");
    assert_eq!(slots.expire(soon), Some(late));
    assert!(matches!(received(first), Grant::Expired));
    assert_eq!(slots.occupancy(), occupancy(1, 0, 1));
    assert_eq!(slots.expire(late), None);
    assert!(matches!(received(second), Grant::Expired));
}

#[test]
fn the_expiring_task_is_woken_only_when_a_queue_starts_or_the_pool_ends() {
    use futures_util::FutureExt;
    let slots = Slots::new(1, None);
    let wake = slots.queue_started();
    let lent = open(&slots, 1);
    assert!(wake.notified().now_or_never().is_none());
    let first = queued(&slots);
    assert!(wake.notified().now_or_never().is_some(), "first waiter");
    let second = queued(&slots);
    let behind = wake.notified().now_or_never();
    assert!(
        behind.is_none(),
        "behind someone: the head's deadline comes first"
    );
    drop((first, second, lent, slots));
    assert!(wake.notified().now_or_never().is_some(), "dropped");
}

#[test]
fn an_earlier_deadline_queued_behind_a_later_one_is_raised_to_keep_the_queue_in_order() {
    let slots = Slots::new(1, None);
    let a = open(&slots, 1);
    let now = Instant::now();
    let (soon, late) = (now + Duration::from_secs(1), now + Duration::from_secs(2));
    let (Take::Queued(first), Take::Queued(second)) = (slots.take(late), slots.take(soon)) else {
        panic!("expected to queue");
    };
    a.give_back();
    let _served = lent_id(received(first));
    // The second client is now the head; its deadline was raised to the one ahead of it.
    assert_eq!(slots.expire(soon), Some(late));
    assert_eq!(slots.expire(late), None);
    assert!(matches!(received(second), Grant::Expired));
}

mod limits;
