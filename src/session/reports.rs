//! ParameterStatus messages of a client Query that pgferry follows with a restore of the
//! client's startup settings (see `params::restore`), folded into what PostgreSQL reports.
//!
//! PostgreSQL sends a ParameterStatus just before ReadyForQuery, for each reported parameter
//! whose value differs from the one last reported (in PostgreSQL 15: in name order, ignoring
//! case). Here the client's Query and pgferry's restore end with two ReadyForQuery, and
//! each reports its own intermediate values (a `RESET DateStyle` reports the backend's default,
//! the restore the client's startup value). So the reports of both are held back, and at the
//! restore's ReadyForQuery the client gets the final value of each parameter that differs
//! from what it was last told, then one ReadyForQuery: exactly what a direct connection sends.
//!
//! Only these two requests take this path, counted in [`Held::folding`] so that every other
//! ReadyForQuery and ParameterStatus costs one integer test.

use bytes::{Bytes, BytesMut};

use super::held::Held;
use super::params::ClientParams;
use crate::protocol::messages;

/// How the ParameterStatus and ReadyForQuery replies of a request reach the client.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Reports {
    /// As the backend sends them.
    #[default]
    Direct,
    /// A client Query followed by a restore: its reports and ReadyForQuery are held back.
    Held,
    /// The restore: its ReadyForQuery carries every report held back, folded.
    Folded,
}

/// A report held back: the backend's value before the first held report of the parameter,
/// and its latest value.
#[derive(Debug)]
pub struct HeldReport {
    name: String,
    before: Option<String>,
    value: String,
}

/// How the request whose replies are arriving wants its reports.
pub fn current(held: &mut Held) -> Reports {
    if held.folding == 0 {
        return Reports::Direct;
    }
    held.queue
        .front_action_mut()
        .map_or(Reports::Direct, |action| action.reports)
}

/// Holds back a ParameterStatus of a `Held` or `Folded` request; the backend's record follows
/// it at once (it is the backend's true state).
pub fn hold(held: &mut Held, name: String, value: String) {
    let before = held.conn().params.get(&name).cloned();
    held.conn().params.insert(name.clone(), value.clone());
    match held.held_reports.iter_mut().find(|r| r.name == name) {
        Some(report) => report.value = value,
        None => held.held_reports.push(HeldReport {
            name,
            before,
            value,
        }),
    }
}

/// The ReadyForQuery of a `Held` or `Folded` request arrived: `None` to swallow it (`Held`),
/// or the messages the client gets instead (`Folded`): the folded reports, then `ready`.
pub fn on_ready(
    held: &mut Held,
    params: &mut ClientParams,
    reports: Reports,
    ready: &[u8],
) -> Option<Bytes> {
    held.folding = held.folding.saturating_sub(1);
    if reports != Reports::Folded {
        return None;
    }
    let mut reports = std::mem::take(&mut held.held_reports);
    reports.sort_by_key(|r| r.name.to_ascii_lowercase());
    let mut out = BytesMut::new();
    for report in &reports {
        if params.client_view(&report.name, report.before.as_deref()) != Some(&report.value) {
            messages::parameter_status(&mut out, &report.name, &report.value);
        }
        params.observe(&report.name, &report.value);
    }
    out.extend_from_slice(ready);
    Some(out.freeze())
}
