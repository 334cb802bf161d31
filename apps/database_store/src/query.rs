//! The query engine: walks the points of each measurement in key order
//! (one bounded index-range scan per chunk, keyset pagination), applies
//! the filters and the field list in Rust, turns points into upstream rows
//! or aggregation windows, and stops at the row limit, the byte budget or
//! the deadline with a continuation.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::aggregate::{Accumulator, window_start};
use crate::continuation::Position;
use crate::error::StoreError;
use crate::point::{DEFAULT_TAG, FieldValue, Fields, Tags};
use crate::request::{Filter, Function, Query};
use crate::store::{Order, RawPoint, Read, Scan};
use crate::time::format_rfc3339;

/// The most points one scan statement returns.
pub const MAX_CHUNK: usize = 4096;
/// The most series × fields one aggregation window may hold.
pub const MAX_WINDOW_ENTRIES: usize = 100_000;
/// The most tag sets remembered by a [`SeriesCache`].
pub const SERIES_CACHE: usize = 100_000;

/// Tags of series by id (tag sets never change once stored).
#[derive(Debug, Default)]
pub struct SeriesCache(Mutex<HashMap<i64, Arc<Tags>>>);

impl SeriesCache {
    fn lookup(
        &self,
        read: &mut dyn Read,
        points: &[RawPoint],
    ) -> Result<HashMap<i64, Arc<Tags>>, StoreError> {
        let mut found = HashMap::new();
        let mut missing = Vec::new();
        {
            let cache = self.0.lock().unwrap_or_else(|e| e.into_inner());
            for point in points {
                if found.contains_key(&point.series) || missing.contains(&point.series) {
                    continue;
                }
                match cache.get(&point.series) {
                    Some(tags) => {
                        found.insert(point.series, tags.clone());
                    }
                    None => missing.push(point.series),
                }
            }
        }
        if missing.is_empty() {
            return Ok(found);
        }
        let loaded = read.series_tags(&missing)?;
        let mut cache = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() + loaded.len() > SERIES_CACHE {
            cache.clear();
        }
        for (id, text) in loaded {
            let tags: Arc<Tags> = Arc::new(serde_json::from_str(&text).unwrap_or_default());
            cache.insert(id, tags.clone());
            found.insert(id, tags);
        }
        Ok(found)
    }
}

/// What bounds one page besides the query's `limit`.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Stop reading at this instant (once the page has moved on by at
    /// least one point or window).
    pub deadline: Instant,
    /// Give up at this instant, also without progress (an aggregation
    /// window that takes this long is refused).
    pub hard_deadline: Instant,
    /// The most bytes of rows (serialised) in the page.
    pub max_bytes: usize,
}

/// One page of rows.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// The rows, each a serialised JSON object.
    pub rows: Vec<String>,
    /// There may be more rows: ask again with `continuation`.
    pub truncated: bool,
    /// The token for the next page, when truncated.
    pub continuation: Option<String>,
}

impl Page {
    /// The reply in the upstream format plus `truncated` and
    /// `continuation`: `{"success": true, "count": N, "data": [...], ...}`.
    pub fn to_reply(&self) -> String {
        let mut reply =
            String::with_capacity(64 + self.rows.iter().map(|r| r.len() + 1).sum::<usize>());
        reply.push_str("{\"success\":true,\"count\":");
        reply.push_str(&self.rows.len().to_string());
        reply.push_str(",\"data\":[");
        for (i, row) in self.rows.iter().enumerate() {
            if i > 0 {
                reply.push(',');
            }
            reply.push_str(row);
        }
        reply.push_str("],\"truncated\":");
        reply.push_str(if self.truncated { "true" } else { "false" });
        if let Some(token) = &self.continuation {
            reply.push_str(",\"continuation\":");
            reply.push_str(&serde_json::Value::String(token.clone()).to_string());
        }
        reply.push('}');
        reply
    }
}

/// The error reply: `{"success": false, "error": "..."}`.
pub fn error_reply(message: &str) -> String {
    serde_json::json!({"success": false, "error": message}).to_string()
}

/// Why a scan stopped early: where the next page starts.
struct Stop {
    time: i64,
    series: i64,
    field: Option<String>,
}

/// The page being filled.
struct Builder<'q> {
    query: &'q Query,
    budget: Budget,
    rows: Vec<String>,
    bytes: usize,
    tables: HashMap<(i64, i64, String), usize>,
    start: String,
    stop: String,
    progressed: bool,
}

impl Builder<'_> {
    /// Adds a row, or `false` when the page is full.
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        measurement: (i64, &str),
        series: i64,
        tags: &Tags,
        field: &str,
        time: i64,
        value: serde_json::Value,
    ) -> bool {
        if self.rows.len() >= self.query.limit {
            return false;
        }
        let table_key = (measurement.0, series, field.to_owned());
        let table = self
            .tables
            .get(&table_key)
            .copied()
            .unwrap_or(self.tables.len());
        let mut row = String::with_capacity(160);
        row.push_str("{\"result\":\"_result\",\"table\":");
        row.push_str(&table.to_string());
        row.push_str(",\"_start\":\"");
        row.push_str(&self.start);
        row.push_str("\",\"_stop\":\"");
        row.push_str(&self.stop);
        row.push_str("\",\"_time\":\"");
        row.push_str(&format_rfc3339(time));
        row.push_str("\",\"_value\":");
        row.push_str(&value.to_string());
        let string = |s: &str| serde_json::Value::String(s.to_owned()).to_string();
        row.push_str(",\"_field\":");
        row.push_str(&string(field));
        row.push_str(",\"_measurement\":");
        row.push_str(&string(measurement.1));
        for (key, value) in tags {
            row.push(',');
            row.push_str(&string(key));
            row.push(':');
            row.push_str(&string(value));
        }
        if !tags.contains_key(DEFAULT_TAG.0) {
            row.push_str(&format!(",\"{}\":\"{}\"", DEFAULT_TAG.0, DEFAULT_TAG.1));
        }
        row.push('}');
        if !self.rows.is_empty() && self.bytes + row.len() + 1 > self.budget.max_bytes {
            return false;
        }
        self.tables.insert(table_key, table);
        self.bytes += row.len() + 1;
        self.rows.push(row);
        true
    }

    /// Past the deadline, once the page made progress (so that every page,
    /// however small the budget, moves on).
    fn out_of_time(&self) -> bool {
        self.progressed && Instant::now() >= self.budget.deadline
    }
}

fn parse_fields(text: &str) -> Fields {
    let Ok(object) = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text)
    else {
        return Fields::new();
    };
    object
        .into_iter()
        .filter_map(|(key, value)| {
            let value = match value {
                serde_json::Value::Number(n) => FieldValue::Float(n.as_f64()?),
                serde_json::Value::Bool(b) => FieldValue::Bool(b),
                serde_json::Value::String(s) => FieldValue::Str(s),
                _ => return None,
            };
            Some((key, value))
        })
        .collect()
}

fn matches(filters: &[Filter], tags: &Tags, fields: &Fields) -> bool {
    filters.iter().all(|filter| match &filter.value {
        serde_json::Value::String(text) => {
            tags.get(&filter.key) == Some(text)
                || (filter.key == DEFAULT_TAG.0
                    && text == DEFAULT_TAG.1
                    && !tags.contains_key(DEFAULT_TAG.0))
                || matches!(fields.get(&filter.key), Some(FieldValue::Str(s)) if s == text)
        }
        serde_json::Value::Number(number) => {
            matches!(fields.get(&filter.key), Some(FieldValue::Float(f)) if Some(*f) == number.as_f64())
        }
        serde_json::Value::Bool(flag) => {
            matches!(fields.get(&filter.key), Some(FieldValue::Bool(b)) if b == flag)
        }
        _ => false,
    })
}

fn wanted(query: &Query, field: &str) -> bool {
    query
        .fields
        .as_ref()
        .is_none_or(|only| only.contains(field))
}

/// The key after `(time, series)` in scan order.
fn next_key(order: Order, (time, series): (i64, i64)) -> Option<(i64, i64)> {
    match order {
        Order::Asc => match series.checked_add(1) {
            Some(s) => Some((time, s)),
            None => time.checked_add(1).map(|t| (t, i64::MIN)),
        },
        Order::Desc => match series.checked_sub(1) {
            Some(s) => Some((time, s)),
            None => time.checked_sub(1).map(|t| (t, i64::MAX)),
        },
    }
}

fn chunk_size(query: &Query, page_rows: usize) -> usize {
    let wanted = query.limit.saturating_sub(page_rows) + 1;
    if query.aggregate.is_some() {
        MAX_CHUNK
    } else {
        wanted.clamp(2, MAX_CHUNK)
    }
}

/// Runs `query` for one page.
///
/// # Errors
///
/// When the database fails (a statement past the deadline inside the
/// database is [`StoreError::Timeout`]).
pub fn run(
    read: &mut dyn Read,
    query: &Query,
    budget: Budget,
    cache: &SeriesCache,
) -> Result<Page, StoreError> {
    let mut builder = Builder {
        query,
        budget,
        rows: Vec::new(),
        bytes: 0,
        tables: HashMap::new(),
        start: format_rfc3339(query.start),
        stop: format_rfc3339(query.stop),
        progressed: false,
    };
    if query.fields.as_ref().is_some_and(|f| f.is_empty()) {
        return Ok(Page::default());
    }
    let measurements = read.measurements(query.measurement.as_deref())?;
    for (id, name) in measurements {
        let resume = query
            .position
            .as_ref()
            .filter(|position| position.measurement == name);
        if let Some(position) = &query.position
            && name.as_str() < position.measurement.as_str()
        {
            continue;
        }
        let stopped = match query.aggregate {
            None => scan_rows(read, (id, &name), resume, &mut builder, cache)?,
            Some((every, function)) => scan_windows(
                read,
                (id, &name),
                resume,
                every,
                function,
                &mut builder,
                cache,
            )?,
        };
        if let Some(stop) = stopped {
            let position = Position {
                v: 1,
                q: query.fingerprint,
                start: query.start,
                stop: query.stop,
                measurement: name,
                time: stop.time,
                series: stop.series,
                field: stop.field,
            };
            return Ok(Page {
                rows: builder.rows,
                truncated: true,
                continuation: Some(position.encode()),
            });
        }
    }
    Ok(Page {
        rows: builder.rows,
        truncated: false,
        continuation: None,
    })
}

/// Raw rows: one per field of each matching point.
fn scan_rows(
    read: &mut dyn Read,
    measurement: (i64, &str),
    resume: Option<&Position>,
    builder: &mut Builder<'_>,
    cache: &SeriesCache,
) -> Result<Option<Stop>, StoreError> {
    let query = builder.query;
    let (mut key, bound) = match query.order {
        Order::Asc => ((query.start, i64::MIN), query.stop),
        Order::Desc => ((query.stop - 1, i64::MAX), query.start),
    };
    let mut skip: Option<((i64, i64), String)> = None;
    if let Some(position) = resume {
        key = (position.time, position.series);
        skip = position.field.clone().map(|f| (key, f));
    }
    loop {
        if builder.out_of_time() {
            return Ok(Some(Stop {
                time: key.0,
                series: key.1,
                field: skip.filter(|(k, _)| *k == key).map(|(_, f)| f),
            }));
        }
        let limit = chunk_size(query, builder.rows.len());
        let points = match read.scan(&Scan {
            measurement: measurement.0,
            key,
            bound,
            order: query.order,
            limit,
        }) {
            Err(StoreError::Timeout) if builder.progressed => {
                return Ok(Some(Stop {
                    time: key.0,
                    series: key.1,
                    field: skip.filter(|(k, _)| *k == key).map(|(_, f)| f),
                }));
            }
            other => other?,
        };
        let tags = cache.lookup(read, &points)?;
        for (i, point) in points.iter().enumerate() {
            let here = (point.time, point.series);
            let mut last_sent = skip
                .as_ref()
                .filter(|(k, _)| *k == here)
                .map(|(_, f)| f.clone());
            if i % 64 == 63 && builder.out_of_time() {
                return Ok(Some(Stop {
                    time: here.0,
                    series: here.1,
                    field: last_sent,
                }));
            }
            builder.progressed = true;
            let fields = parse_fields(&point.fields);
            let no_tags = Tags::new();
            let point_tags = tags.get(&point.series).map_or(&no_tags, |t| t.as_ref());
            if !matches(&query.filters, point_tags, &fields) {
                continue;
            }
            for (name, value) in &fields {
                if !wanted(query, name) || last_sent.as_ref().is_some_and(|sent| name <= sent) {
                    continue;
                }
                if !builder.push(
                    measurement,
                    point.series,
                    point_tags,
                    name,
                    point.time,
                    value.to_json(),
                ) {
                    return Ok(Some(Stop {
                        time: here.0,
                        series: here.1,
                        field: last_sent,
                    }));
                }
                last_sent = Some(name.clone());
            }
        }
        let Some(last) = points.last() else {
            return Ok(None);
        };
        if points.len() < limit {
            return Ok(None);
        }
        match next_key(query.order, (last.time, last.series)) {
            Some(next) => key = next,
            None => return Ok(None),
        }
    }
}

/// Aggregation windows: one row per window, series and field.
fn scan_windows(
    read: &mut dyn Read,
    measurement: (i64, &str),
    resume: Option<&Position>,
    every: i64,
    function: Function,
    builder: &mut Builder<'_>,
    cache: &SeriesCache,
) -> Result<Option<Stop>, StoreError> {
    let query = builder.query;
    let (mut key, bound) = match (query.order, resume) {
        (Order::Asc, None) => ((query.start, i64::MIN), query.stop),
        (Order::Desc, None) => ((query.stop - 1, i64::MAX), query.start),
        (Order::Asc, Some(p)) => ((p.time.max(query.start), i64::MIN), query.stop),
        (Order::Desc, Some(p)) => (
            (p.time.saturating_add(every).min(query.stop) - 1, i64::MAX),
            query.start,
        ),
    };
    // Rows of the resumed window already sent: (series, field) up to this.
    let skip = resume.map(|p| (p.time, (p.series, p.field.clone())));
    let mut window: Option<i64> = None;
    let mut flushed = false;
    let mut accumulators: BTreeMap<(i64, String), Accumulator> = BTreeMap::new();
    let mut window_tags: HashMap<i64, Arc<Tags>> = HashMap::new();
    let stop_at = |window: i64, sent: Option<(i64, String)>| Stop {
        time: window,
        series: sent.as_ref().map_or(i64::MIN, |(s, _)| *s),
        field: sent.map(|(_, f)| f),
    };
    // Sends a finished window; `Err(stop)` when the page is full.
    let flush = |window: i64,
                 accumulators: &mut BTreeMap<(i64, String), Accumulator>,
                 window_tags: &HashMap<i64, Arc<Tags>>,
                 builder: &mut Builder<'_>|
     -> Result<(), Stop> {
        let mut sent: Option<(i64, String)> = skip
            .as_ref()
            .filter(|(w, _)| *w == window)
            .and_then(|(_, (s, f))| f.clone().map(|f| (*s, f)));
        let time = window.saturating_add(every).min(query.stop);
        for ((series, field), accumulator) in std::mem::take(accumulators) {
            if sent
                .as_ref()
                .is_some_and(|(s, f)| (series, &field) <= (*s, f))
            {
                continue;
            }
            let Some(value) = accumulator.finish(function) else {
                continue;
            };
            let no_tags = Tags::new();
            let tags = window_tags.get(&series).map_or(&no_tags, |t| t.as_ref());
            if !builder.push(measurement, series, tags, &field, time, value) {
                return Err(stop_at(window, sent));
            }
            sent = Some((series, field));
        }
        Ok(())
    };
    loop {
        let limit = MAX_CHUNK;
        let points = match read.scan(&Scan {
            measurement: measurement.0,
            key,
            bound,
            order: query.order,
            limit,
        }) {
            Err(StoreError::Timeout) if !builder.rows.is_empty() || flushed => {
                let current = window.unwrap_or_else(|| window_start(key.0, every));
                let sent = skip
                    .as_ref()
                    .filter(|(w, _)| *w == current)
                    .and_then(|(_, (s, f))| f.clone().map(|f| (*s, f)));
                return Ok(Some(stop_at(current, sent)));
            }
            other => other?,
        };
        let tags = cache.lookup(read, &points)?;
        for (i, point) in points.iter().enumerate() {
            if i % 64 == 0 && Instant::now() >= builder.budget.deadline {
                if builder.rows.is_empty() && !flushed {
                    // The page's first window must finish (progress), up to
                    // the hard deadline.
                    if Instant::now() >= builder.budget.hard_deadline {
                        return Err(StoreError::Config(
                            "one aggregation window takes longer than the time budget: use a \
                             shorter every, fields or filters"
                                .into(),
                        ));
                    }
                } else {
                    // The window in progress is left for the next page.
                    let current = window.unwrap_or_else(|| window_start(point.time, every));
                    let sent = skip
                        .as_ref()
                        .filter(|(w, _)| *w == current)
                        .and_then(|(_, (s, f))| f.clone().map(|f| (*s, f)));
                    return Ok(Some(stop_at(current, sent)));
                }
            }
            let this_window = window_start(point.time, every);
            if window != Some(this_window) {
                if let Some(done) = window {
                    if let Err(stop) = flush(done, &mut accumulators, &window_tags, builder) {
                        return Ok(Some(stop));
                    }
                    flushed = true;
                    builder.progressed = true;
                }
                window = Some(this_window);
                window_tags.clear();
            }
            let fields = parse_fields(&point.fields);
            let no_tags = Arc::new(Tags::new());
            let point_tags = tags.get(&point.series).unwrap_or(&no_tags);
            if !matches(&query.filters, point_tags, &fields) {
                continue;
            }
            for (name, value) in &fields {
                if wanted(query, name) {
                    accumulators
                        .entry((point.series, name.clone()))
                        .or_default()
                        .add(point.time, value);
                }
            }
            window_tags.insert(point.series, point_tags.clone());
            if accumulators.len() > MAX_WINDOW_ENTRIES {
                return Err(StoreError::Config(format!(
                    "more than {MAX_WINDOW_ENTRIES} series and fields in one window: use a \
                     shorter every, fields or filters"
                )));
            }
        }
        let done = points.len() < limit;
        if !done
            && let Some(last) = points.last()
            && let Some(next) = next_key(query.order, (last.time, last.series))
        {
            key = next;
            continue;
        }
        if let Some(last_window) = window
            && let Err(stop) = flush(last_window, &mut accumulators, &window_tags, builder)
        {
            return Ok(Some(stop));
        }
        return Ok(None);
    }
}
