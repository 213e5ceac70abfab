//! What a fresh backend connection of a pool reports: the ParameterStatus values every client of
//! that pool first sees at login.

use std::collections::HashMap;
use std::ops::Deref;

/// The reported parameters of a fresh backend, by name, plus the order PostgreSQL reports them
/// in at login (by name, ignoring case). The order is worked out once per pool, not per login:
/// sorting ~15 names with case folding was a tenth of the instructions of a plain login.
#[derive(Debug, Default, Clone)]
pub struct Baseline {
    values: HashMap<String, String>,
    report_order: Vec<(String, String)>,
}

impl Baseline {
    /// The parameters, each with its value, in PostgreSQL's login order.
    pub fn in_report_order(&self) -> impl Iterator<Item = (&str, &str)> {
        self.report_order
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
    }
}

impl From<HashMap<String, String>> for Baseline {
    fn from(values: HashMap<String, String>) -> Self {
        let mut report_order: Vec<(String, String)> = values
            .iter()
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        report_order.sort_by_cached_key(|(name, _)| name.to_ascii_lowercase());
        Baseline {
            values,
            report_order,
        }
    }
}

/// Lookups by name read the map.
impl Deref for Baseline {
    type Target = HashMap<String, String>;

    fn deref(&self) -> &Self::Target {
        &self.values
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_order_is_by_name_ignoring_case() {
        let values: HashMap<String, String> = ["TimeZone", "application_name", "DateStyle"]
            .into_iter()
            .map(|name| (name.to_string(), format!("{name} value")))
            .collect();
        let baseline = Baseline::from(values);
        let names: Vec<&str> = baseline.in_report_order().map(|(name, _)| name).collect();
        assert_eq!(names, ["application_name", "DateStyle", "TimeZone"]);
        assert_eq!(baseline["DateStyle"], "DateStyle value");
    }
}
