//! The result objects: a bundle's [`EvaluationResult`] and the per-policy [`Decision`]s, read
//! through attributes; `to_dict()` is exactly the runtime's JSON (what `verdict eval` prints).
//!
//! The runtime's result is kept as it is (shared: plain results that depend only on the outcome
//! are built once per distinct outcome, see `engine::Results`) and converted to Python objects
//! attribute by attribute when they are read, so an evaluation whose caller reads only `kind`
//! builds no dicts. A stateful decision's result keeps the store it was recorded in, for
//! `commit()` and `release()`.

use crate::pyjson;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use std::sync::Arc;
use verdict_runtime::decision;
use verdict_runtime::state::{self, StateStore};

/// The kind of an allowing decision (`allowed` is `kind == "allow"`).
const ALLOW: &str = "allow";

/// The result of evaluating a bundle on one request.
#[pyclass(frozen, module = "verdict", name = "EvaluationResult")]
pub struct EvaluationResult {
    pub result: Arc<decision::EvaluationResult>,
    /// The store a stateful decision was recorded in.
    pub store: Option<Arc<dyn StateStore>>,
}

impl EvaluationResult {
    /// Commits or releases this decision's holds; `None` when it made none.
    fn settle(&self, py: Python<'_>, now: Option<&Bound<'_, PyAny>>, commit: bool) -> PyResult<Option<&'static str>> {
        let (Some(store), Some(id)) = (&self.store, self.result.decision_id.as_deref()) else { return Ok(None) };
        if self.result.holds.is_empty() {
            return Ok(None);
        }
        let at = state::micros(crate::engine::timestamp(py, now)?);
        let settled =
            crate::host::with_store(py, || if commit { store.commit(id, at) } else { store.release(id, at) })?;
        settled.map(|s| Some(crate::host::settled(s))).map_err(|e| crate::host::store_error(py, &e))
    }
}

/// One policy's decision (or the bundle's, as `EvaluationResult` exposes it).
#[pyclass(frozen, module = "verdict", name = "Decision")]
pub struct Decision {
    decision: decision::Decision,
}

fn codes<'py>(py: Python<'py>, d: &decision::Decision) -> PyResult<Bound<'py, PyList>> {
    PyList::new(py, &d.codes)
}

fn repr(d: &decision::Decision) -> String {
    let opt = |s: &Option<String>| s.as_deref().map_or_else(|| "None".to_owned(), |s| format!("{s:?}"));
    format!(
        "kind={:?}, policy_id={}, rule_id={}, reason={:?}",
        d.kind,
        opt(&d.matched_policy_id),
        opt(&d.matched_rule_id),
        d.reason
    )
}

#[pymethods]
impl EvaluationResult {
    /// The decision's kind: an effect name or `not_applicable`.
    #[getter]
    fn kind(&self) -> &str {
        &self.result.decision.kind
    }

    /// Whether the decision is `allow`.
    #[getter]
    fn allowed(&self) -> bool {
        self.result.decision.kind == ALLOW
    }

    #[getter]
    fn policy_id(&self) -> Option<&str> {
        self.result.decision.matched_policy_id.as_deref()
    }

    #[getter]
    fn rule_id(&self) -> Option<&str> {
        self.result.decision.matched_rule_id.as_deref()
    }

    #[getter]
    fn reason(&self) -> &str {
        &self.result.decision.reason
    }

    #[getter]
    fn codes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        codes(py, &self.result.decision)
    }

    #[getter]
    fn obligations<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        pyjson::map_to_py(py, &self.result.decision.obligations)
    }

    /// Every policy's decision, in policy order.
    #[getter]
    fn policy_decisions<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for d in &self.result.policy_decisions {
            list.append(Bound::new(py, Decision { decision: d.clone() })?)?;
        }
        Ok(list)
    }

    /// The trace as JSON-like lists and dicts, when the evaluation asked for one.
    #[getter]
    fn trace<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        match &self.result.trace {
            None => Ok(None),
            Some(entries) => {
                let list = PyList::empty(py);
                for e in entries {
                    list.append(pyjson::to_py(py, &serde_json::to_value(e).unwrap_or_default())?)?;
                }
                Ok(Some(list.into_any()))
            }
        }
    }

    /// The decision's id (stateful bundles; `None` otherwise).
    #[getter]
    fn decision_id(&self) -> Option<&str> {
        self.result.decision_id.as_deref()
    }

    /// The holds the decision made, as dicts (`state`, `key`, `amount`); empty when none.
    #[getter]
    fn holds<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        pyjson::to_py(py, &serde_json::to_value(&self.result.holds).unwrap_or_default())
    }

    /// Every rule whose condition held (exhaustive evaluations; `None` otherwise), as dicts
    /// (`policy_id`, `rule_id`, and `effect` or `error`).
    #[getter]
    fn matches<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.result
            .matches
            .as_ref()
            .map(|m| pyjson::to_py(py, &serde_json::to_value(m).unwrap_or_default()))
            .transpose()
    }

    /// How many rule conditions were evaluated (exhaustive evaluations; `None` otherwise).
    #[getter]
    fn rules_evaluated(&self) -> Option<u64> {
        self.result.rules_evaluated
    }

    /// Makes this decision's holds permanent (after the action it allowed succeeded), at `now`
    /// (the current time when omitted): "committed", or `None` when it made no holds.
    #[pyo3(signature = (*, now = None))]
    fn commit(&self, py: Python<'_>, now: Option<&Bound<'_, PyAny>>) -> PyResult<Option<&'static str>> {
        self.settle(py, now, true)
    }

    /// Drops this decision's holds (the action failed or was abandoned): "released", or `None`
    /// when it made no holds.
    #[pyo3(signature = (*, now = None))]
    fn release(&self, py: Python<'_>, now: Option<&Bound<'_, PyAny>>) -> PyResult<Option<&'static str>> {
        self.settle(py, now, false)
    }

    #[getter]
    fn bundle_id(&self) -> &str {
        &self.result.bundle_id
    }

    #[getter]
    fn bundle_version(&self) -> &str {
        &self.result.bundle_version
    }

    #[getter]
    fn fingerprint(&self) -> &str {
        &self.result.fingerprint
    }

    /// The decision JSON of LANGUAGE.md §4, as `verdict eval` prints it.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        pyjson::to_py(py, &self.result.to_json())
    }

    fn __repr__(&self) -> String {
        format!("EvaluationResult({})", repr(&self.result.decision))
    }
}

#[pymethods]
impl Decision {
    #[getter]
    fn kind(&self) -> &str {
        &self.decision.kind
    }

    #[getter]
    fn allowed(&self) -> bool {
        self.decision.kind == ALLOW
    }

    #[getter]
    fn policy_id(&self) -> Option<&str> {
        self.decision.matched_policy_id.as_deref()
    }

    #[getter]
    fn rule_id(&self) -> Option<&str> {
        self.decision.matched_rule_id.as_deref()
    }

    #[getter]
    fn reason(&self) -> &str {
        &self.decision.reason
    }

    #[getter]
    fn codes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        codes(py, &self.decision)
    }

    #[getter]
    fn obligations<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        pyjson::map_to_py(py, &self.decision.obligations)
    }

    /// The decision object of the result JSON.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        pyjson::to_py(py, &serde_json::to_value(&self.decision).unwrap_or_default())
    }

    fn __repr__(&self) -> String {
        format!("Decision({})", repr(&self.decision))
    }
}
