//! Aggregation windows: one accumulator per series and field, finished
//! into the window's value by the request's function.

use crate::point::FieldValue;
use crate::request::Function;

/// The values of one series' field in one window.
#[derive(Debug, Default, Clone)]
pub struct Accumulator {
    count: u64,
    numbers: u64,
    sum: f64,
    min: f64,
    max: f64,
    first: Option<(i64, FieldValue)>,
    last: Option<(i64, FieldValue)>,
}

impl Accumulator {
    /// Adds the value a point had at `time`.
    pub fn add(&mut self, time: i64, value: &FieldValue) {
        self.count += 1;
        if let Some(number) = value.as_f64() {
            if self.numbers == 0 {
                self.min = number;
                self.max = number;
            } else {
                self.min = self.min.min(number);
                self.max = self.max.max(number);
            }
            self.numbers += 1;
            self.sum += number;
        }
        if self.first.as_ref().is_none_or(|(t, _)| time < *t) {
            self.first = Some((time, value.clone()));
        }
        if self.last.as_ref().is_none_or(|(t, _)| time > *t) {
            self.last = Some((time, value.clone()));
        }
    }

    /// The window's value; `None` when the function has nothing to work
    /// on (`mean`, `min`, `max` and `sum` of a window without numbers).
    ///
    /// ```
    /// use database_store::aggregate::Accumulator;
    /// use database_store::point::FieldValue;
    /// use database_store::request::Function;
    /// let mut acc = Accumulator::default();
    /// acc.add(2, &FieldValue::Float(4.0));
    /// acc.add(1, &FieldValue::Float(2.0));
    /// assert_eq!(acc.finish(Function::Mean), Some(serde_json::json!(3.0)));
    /// assert_eq!(acc.finish(Function::First), Some(serde_json::json!(2.0)));
    /// assert_eq!(acc.finish(Function::Count), Some(serde_json::json!(2)));
    /// ```
    pub fn finish(&self, function: Function) -> Option<serde_json::Value> {
        let number =
            |value: f64| serde_json::Number::from_f64(value).map(serde_json::Value::Number);
        match function {
            Function::Count => Some(serde_json::Value::from(self.count)),
            Function::First => self.first.as_ref().map(|(_, v)| v.to_json()),
            Function::Last => self.last.as_ref().map(|(_, v)| v.to_json()),
            _ if self.numbers == 0 => None,
            Function::Mean => number(self.sum / self.numbers as f64),
            Function::Min => number(self.min),
            Function::Max => number(self.max),
            Function::Sum => number(self.sum),
        }
    }
}

/// The start of the window of length `every` that holds `time` (windows
/// are aligned to the Unix epoch, as Flux's `aggregateWindow`).
///
/// ```
/// assert_eq!(database_store::aggregate::window_start(125, 60), 120);
/// assert_eq!(database_store::aggregate::window_start(-1, 60), -60);
/// ```
pub fn window_start(time: i64, every: i64) -> i64 {
    time.div_euclid(every).saturating_mul(every)
}
