//! Live resize and the database cap: every place and every unit of the cap is accounted for
//! (a leak here is a pool that silently shrinks, or a cap that is silently exceeded).

use super::*;

fn at(seconds: u64) -> Instant {
    Instant::now() + Duration::from_secs(seconds)
}

fn queued_until(slots: &Arc<Slots<Fake>>, deadline: Instant) -> oneshot::Receiver<Grant<Fake>> {
    match slots.take(deadline) {
        Take::Queued(receiver) => receiver,
        _ => panic!("expected to queue"),
    }
}

fn opened(grant: Grant<Fake>, id: u32) -> Lent<Fake> {
    match grant {
        Grant::Open(slot) => slot.fill(fake(id)),
        _ => panic!("expected a free place"),
    }
}

fn capped(cap: &Arc<DbCap<Fake>>, size: u32) -> Arc<Slots<Fake>> {
    Slots::capped(size, None, Some(Arc::clone(cap)))
}

#[test]
fn growing_hands_the_new_places_to_waiters_at_once() {
    let slots = Slots::new(1, None);
    let _a = open(&slots, 1);
    let first = queued(&slots);
    let second = queued(&slots);
    slots.resize(3);
    let _b = opened(received(first), 2);
    let _c = opened(received(second), 3);
    assert_eq!(slots.occupancy(), occupancy(3, 0, 0));
    assert_eq!(slots.size(), 3);
}

#[test]
fn shrinking_closes_idle_now_and_borrowed_on_return() {
    let slots = Slots::new(4, None);
    let [a, b, c, d] = [1, 2, 3, 4].map(|id| open(&slots, id));
    a.give_back();
    b.give_back();
    slots.resize(1);
    assert_eq!(slots.occupancy(), occupancy(2, 0, 0), "both idle closed");
    let waiter = queued(&slots);
    c.give_back();
    assert_eq!(
        slots.occupancy(),
        occupancy(1, 0, 1),
        "closed, not handed on"
    );
    d.give_back();
    let (id, _kept) = lent_id(received(waiter));
    assert_eq!(id, 4, "within the size again: handed over");
    assert_eq!(slots.occupancy(), occupancy(1, 0, 0));
}

#[test]
fn a_connection_dropped_past_the_size_frees_no_place_for_a_waiter() {
    let slots = Slots::new(2, None);
    let a = open(&slots, 1);
    let _b = open(&slots, 2);
    let mut waiter = queued(&slots);
    slots.resize(1);
    drop(a);
    assert!(waiter.try_recv().is_err(), "still over the size");
    assert_eq!(slots.occupancy(), occupancy(1, 0, 1));
}

#[test]
fn the_cap_bounds_the_sum_of_the_pools_and_a_returned_connection_crosses_over() {
    let cap = DbCap::new(2);
    let (a, b) = (capped(&cap, 5), capped(&cap, 5));
    let a1 = open(&a, 1);
    let _a2 = open(&a, 2);
    let waiter = queued(&b);
    assert_eq!(cap.open(), 2);
    a1.give_back();
    let _b1 = opened(received(waiter), 3);
    assert_eq!(a.occupancy(), occupancy(1, 0, 0), "closed to make room");
    assert_eq!(b.occupancy(), occupancy(1, 0, 0));
    assert_eq!(cap.open(), 2);
}

#[test]
fn an_idle_connection_of_another_pool_is_evicted_for_a_waiter() {
    let cap = DbCap::new(2);
    let (a, b) = (capped(&cap, 5), capped(&cap, 5));
    let (a1, a2) = (open(&a, 1), open(&a, 2));
    a1.give_back();
    a2.give_back();
    assert_eq!(a.occupancy(), occupancy(2, 2, 0));
    let waiter = queued(&b);
    let _b1 = opened(received(waiter), 3);
    assert_eq!(a.occupancy(), occupancy(1, 1, 0));
    assert_eq!(cap.open(), 2);
}

#[test]
fn clients_waiting_for_the_cap_are_served_in_arrival_order_across_pools() {
    let cap = DbCap::new(1);
    let (a, b) = (capped(&cap, 5), capped(&cap, 5));
    let a1 = open(&a, 1);
    let b_first = queued_until(&b, at(10));
    let mut a_later = queued_until(&a, at(20));
    a1.give_back();
    assert!(a_later.try_recv().is_err(), "b's client came first");
    let b1 = opened(received(b_first), 2);
    assert_eq!(a.occupancy(), occupancy(0, 0, 1));
    b1.give_back();
    let _a2 = opened(received(a_later), 3);
    assert_eq!(
        (a.occupancy().open, b.occupancy().open, cap.open()),
        (1, 0, 1)
    );
}

#[test]
fn a_pools_own_older_waiter_keeps_its_connection() {
    let cap = DbCap::new(1);
    let (a, b) = (capped(&cap, 5), capped(&cap, 5));
    let a1 = open(&a, 1);
    let a_first = queued_until(&a, at(10));
    let mut b_later = queued_until(&b, at(20));
    a1.give_back();
    let (id, a2) = lent_id(received(a_first));
    assert_eq!(id, 1, "handed over within the pool");
    assert!(b_later.try_recv().is_err());
    a2.give_back();
    let _b1 = opened(received(b_later), 2);
    assert_eq!(cap.open(), 1);
}

#[test]
fn the_cap_is_released_when_nobody_waits_and_warming_respects_it() {
    let cap = DbCap::new(1);
    let (a, b) = (capped(&cap, 5), capped(&cap, 5));
    let a1 = open(&a, 1);
    let gone = queued(&b);
    let b_place = b.take_free_place();
    assert!(b_place.is_none(), "at the cap: nothing to warm");
    drop(gone);
    drop(a1);
    assert_eq!(cap.open(), 0, "no waiter left: the unit returns");
    assert!(!cap.is_pressed());
    let warm = b.take_free_place();
    assert!(warm.is_some());
    drop(warm);
    assert_eq!(cap.open(), 0);
}

#[test]
fn changing_the_cap_live_serves_waiters_or_closes_idle_connections() {
    let cap = DbCap::new(1);
    let (a, b) = (capped(&cap, 5), capped(&cap, 5));
    let _a1 = open(&a, 1);
    let waiter = queued(&b);
    cap.set_limit(2);
    let b1 = opened(received(waiter), 2);
    assert_eq!(cap.open(), 2);
    b1.give_back();
    cap.set_limit(1);
    assert_eq!((cap.open(), b.occupancy()), (1, occupancy(0, 0, 0)));
    assert_eq!(cap.limit(), 1);
}

#[test]
fn random_traffic_over_capped_pools_leaks_no_place_and_no_unit() {
    // A small deterministic generator: the same sequence every run.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let cap = DbCap::new(3);
    let pools = [capped(&cap, 2), capped(&cap, 3), capped(&cap, 1)];
    let mut held: Vec<Lent<Fake>> = Vec::new();
    let mut waiting: Vec<oneshot::Receiver<Grant<Fake>>> = Vec::new();
    for step in 0..5_000u32 {
        let pool = &pools[next(3) as usize];
        match next(6) {
            0 | 1 => match pool.take(at(60 + u64::from(step))) {
                Take::Now(Grant::Conn(lent)) => held.push(lent),
                Take::Now(Grant::Open(slot)) => held.push(slot.fill(fake(step))),
                Take::Now(_) => {}
                Take::Queued(receiver) => waiting.push(receiver),
            },
            2 if !held.is_empty() => held
                .swap_remove(next(held.len() as u64) as usize)
                .give_back(),
            3 if !held.is_empty() => drop(held.swap_remove(next(held.len() as u64) as usize)),
            4 if !waiting.is_empty() => {
                drop(waiting.swap_remove(next(waiting.len() as u64) as usize))
            }
            5 => pools[next(3) as usize].resize(1 + next(3) as u32),
            _ => {}
        }
        waiting.retain_mut(|w| match w.try_recv() {
            Ok(Grant::Conn(lent)) => {
                held.push(lent);
                false
            }
            Ok(Grant::Open(slot)) => {
                held.push(slot.fill(fake(step)));
                false
            }
            Ok(_) => false,
            Err(_) => true,
        });
        let open: u32 = pools.iter().map(|p| p.occupancy().open).sum();
        assert_eq!(open, cap.open(), "step {step}: units match places");
        assert!(cap.open() <= 3, "step {step}: cap exceeded");
        assert_eq!(
            held.len() as u32 + pools.iter().map(|p| p.occupancy().idle).sum::<u32>(),
            open
        );
    }
    drop(held);
    drop(waiting);
    for p in &pools {
        drop(p.reap(Instant::now(), Some(Duration::ZERO), 0));
    }
    assert_eq!(cap.open(), 0);
    assert!(pools.iter().all(|p| p.occupancy().open == 0));
}

#[test]
fn the_cap_unpresses_once_nobody_waits_so_checkins_take_the_fast_path_again() {
    let cap = DbCap::new(1);
    let (a, b) = (capped(&cap, 5), capped(&cap, 5));
    let a1 = open(&a, 1);
    let gave_up = queued(&b);
    assert!(cap.is_pressed());
    drop(gave_up);
    a1.give_back();
    assert!(!cap.is_pressed(), "nobody waits: unpressed");
    assert_eq!(a.occupancy(), occupancy(1, 1, 0), "kept idle in its pool");
    assert!(b.take_free_place().is_none(), "the cap is full");
    let Take::Now(Grant::Conn(again)) = a.take(later()) else {
        panic!("the idle connection is reused");
    };
    drop(again);
    assert_eq!(cap.open(), 0);
}

#[test]
fn warming_takes_no_unit_while_a_client_waits_for_the_cap() {
    let cap = DbCap::new(2);
    let (a, b) = (capped(&cap, 5), capped(&cap, 5));
    let _a1 = open(&a, 1);
    let _a2 = open(&a, 2);
    let _waiting = queued(&b);
    drop(_a1);
    // The freed unit went to b's client; a's warming finds nothing while the cap is pressed.
    assert_eq!(b.occupancy().open, 1);
    assert!(a.take_free_place().is_none());
}

#[test]
fn even_pools_serve_their_own_queues_rather_than_swap_backends() {
    let cap = DbCap::new(2);
    let (a, b) = (capped(&cap, 5), capped(&cap, 5));
    let a1 = open(&a, 1);
    let _b1 = open(&b, 2);
    let mut b_first = queued_until(&b, at(10));
    let a_later = queued_until(&a, at(20));
    a1.give_back();
    let (id, _a) = lent_id(received(a_later));
    assert_eq!(id, 1, "one connection each: a keeps its own");
    assert!(b_first.try_recv().is_err(), "b's next return serves it");
    assert_eq!(cap.open(), 2);
}

#[test]
fn a_pool_holding_two_more_gives_one_up_to_an_older_client_elsewhere() {
    let cap = DbCap::new(4);
    let (a, b) = (capped(&cap, 5), capped(&cap, 5));
    let [a1, a2, _a3] = [1, 2, 3].map(|id| open(&a, id));
    let _b1 = open(&b, 4);
    let mut b_first = queued_until(&b, at(10));
    let a_later = queued_until(&a, at(20));
    a1.give_back();
    let _b2 = opened(received(b_first), 5);
    assert_eq!((a.occupancy().open, b.occupancy().open), (2, 2));
    // Now even: the next return stays in a, though b's new client is older.
    b_first = queued_until(&b, at(15));
    a2.give_back();
    let (id, _a) = lent_id(received(a_later));
    assert_eq!(id, 2);
    assert!(b_first.try_recv().is_err());
    assert_eq!(cap.open(), 4);
}
