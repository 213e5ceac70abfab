//! Unit tests of `expect`.

use super::*;

fn queue(requests: &[(Request, Route)]) -> ExpectQueue<()> {
    let mut q = ExpectQueue::default();
    for (request, route) in requests {
        assert!(q.push(*request, *route, ()).is_none());
    }
    q
}

fn kinds(outcome: &Outcome<()>) -> Vec<Request> {
    outcome.completed.iter().map(|p| p.request).collect()
}

use Request::*;
use Route::*;

#[test]
fn the_next_transaction_starts_with_the_oldest_forwarded_request() {
    let mut q = queue(&[(Query, Swallow)]);
    assert_eq!(q.oldest_forwarded_since(), None, "pgferry's own statement");
    assert!(q.push(Query, Forward, ()).is_none());
    let client_query = q.items.back().and_then(|e| match e {
        Entry::Reply(p) => Some(p.since),
        Entry::Synthesize(..) => None,
    });
    assert!(q.push(Query, Forward, ()).is_none());
    assert_eq!(q.oldest_forwarded_since(), client_query);
}

#[test]
fn extended_batch_completes_message_by_message() {
    let mut q = queue(&[
        (Parse, Forward),
        (Bind, Forward),
        (DescribePortal, Forward),
        (Execute, Forward),
        (Sync, Forward),
    ]);
    assert_eq!(kinds(&q.on_backend_message(b'1')), vec![Parse]);
    assert_eq!(kinds(&q.on_backend_message(b'2')), vec![Bind]);
    assert_eq!(kinds(&q.on_backend_message(b'T')), vec![DescribePortal]);
    assert!(q.on_backend_message(b'D').completed.is_none());
    assert_eq!(kinds(&q.on_backend_message(b'C')), vec![Execute]);
    assert_eq!(kinds(&q.on_backend_message(b'Z')), vec![Sync]);
    assert!(q.is_empty());
}

#[test]
fn describe_statement_waits_for_row_description_after_parameter_description() {
    let mut q = queue(&[(DescribeStatement, Forward), (Sync, Forward)]);
    assert!(q.on_backend_message(b't').completed.is_none());
    assert_eq!(kinds(&q.on_backend_message(b'n')), vec![DescribeStatement]);
}

#[test]
fn extended_error_skips_to_sync_including_synthesized_replies() {
    let mut q = queue(&[(Bind, Forward), (Execute, Forward)]);
    assert!(q.push_synthesized(Bytes::from_static(b"1"), ()).is_none());
    assert!(q.push(Sync, Forward, ()).is_none());
    let outcome = q.on_backend_message(b'E');
    assert!(outcome.failed);
    assert_eq!(kinds(&outcome), vec![Bind]);
    assert_eq!(
        outcome.skipped.len(),
        2,
        "the Execute and the synthesized reply"
    );
    assert!(
        q.take_due().is_empty(),
        "a skipped Parse gets no ParseComplete"
    );
    assert_eq!(kinds(&q.on_backend_message(b'Z')), vec![Sync]);
}

#[test]
fn query_errors_wait_for_ready_for_query() {
    let mut q = queue(&[(Query, Forward)]);
    let outcome = q.on_backend_message(b'E');
    assert!(!outcome.failed && outcome.completed.is_none());
    assert_eq!(kinds(&q.on_backend_message(b'Z')), vec![Query]);
}

#[test]
fn swallowed_entries_route_their_replies_but_not_notifications_or_parse_errors() {
    let mut q = queue(&[
        (Query, Swallow),
        (Parse, Swallow),
        (Bind, Forward),
        (Sync, Forward),
    ]);
    assert_eq!(q.on_backend_message(b'S').route, Swallow);
    assert_eq!(q.on_backend_message(b'A').route, Forward);
    assert_eq!(q.on_backend_message(b'Z').route, Swallow);
    assert_eq!(q.on_backend_message(b'E').route, Forward);
    assert_eq!(q.on_backend_message(b'Z').route, Forward);
    assert!(q.is_empty());
}

#[test]
fn synthesized_replies_wait_for_earlier_entries() {
    let mut q = queue(&[(Bind, Forward)]);
    assert!(q.push_synthesized(Bytes::from_static(b"x"), ()).is_none());
    assert!(q.push(Sync, Forward, ()).is_none());
    assert!(q.take_due().is_empty());
    q.on_backend_message(b'2');
    assert_eq!(q.take_due(), vec![Bytes::from_static(b"x")]);
    assert_eq!(q.len(), 1);
}

#[test]
fn syncs_pipelined_into_copy_in_are_dropped() {
    let mut q = queue(&[(Bind, Forward), (Execute, Forward), (Sync, Forward)]);
    q.on_backend_message(b'2');
    q.drop_pending_syncs();
    assert_eq!(q.len(), 1);
    assert_eq!(kinds(&q.on_backend_message(b'C')), vec![Execute]);
    let mut simple = queue(&[(Query, Forward), (Sync, Forward)]);
    simple.drop_pending_syncs();
    assert_eq!(
        simple.len(),
        2,
        "only an Execute's COPY makes Syncs ignored"
    );
}

#[test]
fn requests_sent_while_the_backend_skips_to_sync_are_not_expected() {
    let mut q = queue(&[(Parse, Forward)]);
    let outcome = q.on_backend_message(b'E');
    assert!(outcome.failed && q.is_empty());
    assert!(
        q.is_skipping(),
        "no Sync was queued behind the failed Parse"
    );
    for request in [Query, FunctionCall, Bind, Execute, Parse] {
        assert!(
            q.push(request, Forward, ()).is_some(),
            "{request:?} is skipped"
        );
    }
    assert!(q.push_synthesized(Bytes::from_static(b"1"), ()).is_some());
    assert!(q.is_empty());
    assert!(q.push(Sync, Forward, ()).is_none());
    assert!(!q.is_skipping());
    assert!(
        q.push(Query, Forward, ()).is_none(),
        "after the Sync: answered"
    );
    assert_eq!(kinds(&q.on_backend_message(b'Z')), vec![Sync]);
    assert_eq!(kinds(&q.on_backend_message(b'Z')), vec![Query]);
}

#[test]
fn a_query_queued_behind_a_failed_parse_is_skipped_too() {
    let mut q = queue(&[(Parse, Forward), (Query, Forward), (Sync, Forward)]);
    let outcome = q.on_backend_message(b'E');
    assert_eq!(outcome.skipped.len(), 1, "the Query");
    assert!(!q.is_skipping(), "a Sync is queued");
    assert_eq!(kinds(&q.on_backend_message(b'Z')), vec![Sync]);
    assert!(q.is_empty());
}

#[test]
fn messages_without_entries_are_forwarded() {
    let mut q: ExpectQueue<()> = ExpectQueue::default();
    let outcome = q.on_backend_message(b'N');
    assert_eq!(outcome.route, Forward);
    assert!(outcome.completed.is_none());
}
