//! Python request contexts → runtime requests, reading only what the bundle's paths reach.
//!
//! A `dict` context is walked along the bundle's path trie (the runtime's
//! [`PathTrie`], mirrored here with interned Python keys so that each step is one dict lookup
//! without building a key): only the values on a path are converted to JSON, the rest of the
//! dict is never looked at. This is what `Engine::decide_json` does for JSON bytes with the
//! runtime's projection parser, for a Python tree.
//!
//! Every top-level key goes, in order, through the runtime's validation ([`Request::set_key`],
//! what [`Request::from_value`] does for each key) with its pruned value (reduced to its JSON type
//! where it is not read), so the refusals (unknown keys, wrong types) are the runtime's own. What the walk reaches must be JSON: `None`, `bool`, `int`,
//! `float` (finite), `str`, `dict` with `str` keys, `list` or `tuple`; anything else is refused
//! with the path where it was found.

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde_json::{Map, Number, Value};
use verdict_runtime::project::PathTrie;
use verdict_runtime::request::{Request, step};
use verdict_runtime::vm::PreparedRequest;

/// Values nested deeper than this are refused (the limit serde_json sets for JSON text).
pub const MAX_DEPTH: usize = 128;

/// Why a context was refused.
pub enum Fault {
    /// The context is not what a request context may be; `path` is innermost first.
    Refused { path: Vec<String>, message: String },
    /// Python raised while the context was read.
    Python(PyErr),
}

impl Fault {
    fn refused(message: impl Into<String>) -> Fault {
        Fault::Refused { path: Vec::new(), message: message.into() }
    }

    /// Adds the step that led to where the fault was found.
    fn at(self, step: &str) -> Fault {
        match self {
            Fault::Refused { mut path, message } => {
                path.push(step.to_owned());
                Fault::Refused { path, message }
            }
            other => other,
        }
    }

    /// The message a Python caller sees.
    pub fn message(path: &[String], message: &str) -> String {
        if path.is_empty() {
            return message.to_owned();
        }
        let steps: Vec<&str> = path.iter().rev().map(String::as_str).collect();
        format!("request context `{}`: {message}", steps.join("."))
    }
}

struct Node {
    leaf: bool,
    children: Vec<Child>,
    /// The program path that ends here (set by [`Trie::index`]).
    path: Option<u32>,
}

struct Child {
    /// The step as an interned Python string (its hash is computed once).
    key: Py<PyString>,
    text: String,
    /// The list index this step names, when it is written in ASCII digits (`1`, `01`).
    index: Option<usize>,
    node: usize,
}

/// The bundle's path trie with Python keys, as an arena (node 0 is the merged view's root).
pub struct Trie {
    nodes: Vec<Node>,
    subject: Option<usize>,
    resource: Option<usize>,
    /// How many paths the program has (0 until [`Trie::index`]).
    paths: usize,
    /// The node of `action` and of `resource.vendor_id`, which the card scope reads.
    action: Option<usize>,
    vendor: Option<usize>,
    /// Whether the program has a card scope (which reads the context's own `action` and
    /// `resource.vendor_id`).
    scoped: bool,
    /// The top-level keys [`Trie::prepare_into`] reads, interned.
    roots: [(Py<PyString>, &'static str); 4],
}

/// The list index a step names: ASCII digits only, as the runtime's `request::step` reads it.
fn list_index(step: &str) -> Option<usize> {
    if step.is_empty() || !step.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    step.parse().ok()
}

impl Trie {
    /// Mirrors the runtime's trie (an explicit stack: paths may be long).
    pub fn new(py: Python<'_>, trie: &PathTrie) -> Trie {
        let mut nodes = vec![Node { leaf: trie.is_leaf(), children: Vec::new(), path: None }];
        let mut stack = vec![(trie, 0usize)];
        while let Some((t, at)) = stack.pop() {
            let mut children = Vec::new();
            for (step, child) in t.children() {
                let id = nodes.len();
                nodes.push(Node { leaf: child.is_leaf(), children: Vec::new(), path: None });
                children.push(Child {
                    key: PyString::intern(py, step).unbind(),
                    text: step.to_owned(),
                    index: list_index(step),
                    node: id,
                });
                stack.push((child, id));
            }
            if let Some(n) = nodes.get_mut(at) {
                n.children = children;
            }
        }
        let root_child = |name: &str| nodes.first()?.children.iter().find(|c| c.text == name).map(|c| c.node);
        let (subject, resource) = (root_child("subject"), root_child("resource"));
        let action = root_child("action");
        let roots = ["data", "subject", "resource", "action"].map(|name| (PyString::intern(py, name).unbind(), name));
        Trie { nodes, subject, resource, paths: 0, action, vendor: None, scoped: false, roots }
    }

    /// Marks the trie's nodes with the program's paths (ids are positions in `paths`), for
    /// [`Trie::prepare`]; `scoped`: the program has a card scope. Every path is in the trie,
    /// which was built from them; the empty path (which resolves to nothing) marks no node.
    pub fn index(mut self, paths: &[Vec<String>], scoped: bool) -> Trie {
        let node_of = |nodes: &[Node], segments: &mut dyn Iterator<Item = &str>| {
            let mut at = 0;
            for seg in segments {
                at = nodes.get(at)?.children.iter().find(|c| c.text == seg)?.node;
            }
            Some(at)
        };
        for (id, p) in paths.iter().enumerate() {
            let (Some(node), Ok(id)) = (node_of(&self.nodes, &mut p.iter().map(String::as_str)), u32::try_from(id))
            else {
                continue;
            };
            if let Some(n) = self.nodes.get_mut(node).filter(|_| !p.is_empty()) {
                n.path = Some(id);
            }
        }
        self.vendor = node_of(&self.nodes, &mut ["resource", "vendor_id"].into_iter());
        self.paths = paths.len();
        self.scoped = scoped;
        self
    }

    /// Reads a request context from a Python object that is not JSON text: a `dict` is walked
    /// along the trie; anything else is refused (by the runtime where it is JSON).
    pub fn request(&self, context: &Bound<'_, PyAny>) -> Result<Request, Fault> {
        if let Ok(dict) = context.cast::<PyDict>() {
            return self.top(dict);
        }
        match shape(context) {
            Ok(v) => Request::from_value(v).map_err(|e| Fault::refused(e.message)),
            Err(_) => Err(Fault::refused(format!(
                "a request context must be a dict, or JSON text as str or bytes, not `{}`",
                type_name(context)
            ))),
        }
    }

    /// The top-level object: every key given to the runtime's validation in order (it refuses
    /// unknown ones), each value pruned to what the bundle reads.
    fn top(&self, dict: &Bound<'_, PyDict>) -> Result<Request, Fault> {
        let mut req = Request::default();
        for (k, v) in dict.iter() {
            let Ok(key) = k.cast::<PyString>() else {
                return Err(Fault::refused(format!("request context keys must be strings, not `{}`", type_name(&k))));
            };
            let key = key.to_str().map_err(|_| Fault::refused("a key is not valid Unicode (a lone surrogate)"))?;
            let value = match key {
                // `data`'s keys are the merged view's roots.
                "data" if v.is_instance_of::<PyDict>() => self.walk(&v, 0, 1),
                "subject" | "resource" if v.is_instance_of::<PyDict>() => {
                    match if key == "subject" { self.subject } else { self.resource } {
                        Some(node) => self.walk(&v, node, 1),
                        None => Ok(Value::Object(Map::new())),
                    }
                }
                "data" | "subject" | "resource" | "action" => shape(&v),
                // Refused by the runtime as an unknown key.
                _ => Ok(Value::Null),
            };
            req.set_key(key, value.map_err(|f| f.at(key))?).map_err(|e| Fault::refused(e.message))?;
        }
        Ok(req)
    }

    /// The value at a trie node: whole at a leaf, else only the steps the trie has.
    fn walk(&self, obj: &Bound<'_, PyAny>, node: usize, depth: usize) -> Result<Value, Fault> {
        let Some(n) = self.nodes.get(node) else { return Ok(Value::Null) };
        if n.leaf {
            return to_value(obj, depth);
        }
        if depth >= MAX_DEPTH {
            return Err(too_deep());
        }
        let py = obj.py();
        if let Ok(dict) = obj.cast::<PyDict>() {
            let mut out = Map::with_capacity(n.children.len().min(dict.len()));
            for c in &n.children {
                if let Some(v) = dict.get_item(c.key.bind(py)).map_err(Fault::Python)? {
                    let v = self.walk(&v, c.node, depth + 1).map_err(|f| f.at(&c.text))?;
                    out.insert(c.text.clone(), v);
                }
            }
            return Ok(Value::Object(out));
        }
        if let Ok(list) = obj.cast::<PyList>() {
            return self.walk_items(n, list.len(), |i| list.get_item(i), depth);
        }
        if let Ok(tuple) = obj.cast::<PyTuple>() {
            return self.walk_items(n, tuple.len(), |i| tuple.get_item(i), depth);
        }
        // A scalar where the path goes on: kept (its type matters to lookups that stop here).
        to_value(obj, depth)
    }

    /// A list at an inner node: the elements the trie names, with `null` placeholders before
    /// them so indices stay right (as the projection parser keeps them).
    fn walk_items<'py>(
        &self,
        n: &Node,
        len: usize,
        item: impl Fn(usize) -> PyResult<Bound<'py, PyAny>>,
        depth: usize,
    ) -> Result<Value, Fault> {
        let mut steps: Vec<(usize, &Child)> =
            n.children.iter().filter_map(|c| c.index.filter(|&i| i < len).map(|i| (i, c))).collect();
        steps.sort_by_key(|(i, _)| *i);
        let Some(&(last, _)) = steps.last() else { return Ok(Value::Array(Vec::new())) };
        let mut out = vec![Value::Null; last + 1];
        let mut k = 0;
        while let Some(&(i, c)) = steps.get(k) {
            // Two steps naming one element (`1` and `01`): the element is read whole.
            let several = steps.get(k + 1).is_some_and(|(j, _)| *j == i);
            let obj = item(i).map_err(Fault::Python)?;
            let v = if several { to_value(&obj, depth + 1) } else { self.walk(&obj, c.node, depth + 1) };
            let v = v.map_err(|f| f.at(&i.to_string()))?;
            if let Some(slot) = out.get_mut(i) {
                *slot = v;
            }
            while steps.get(k).is_some_and(|(j, _)| *j == i) {
                k += 1;
            }
        }
        Ok(Value::Array(out))
    }
}

/// A `dict` context read into the values of the bundle's paths ([`Trie::prepare_into`]), kept
/// between evaluations (one per thread) so that each one overwrites the values of the last in
/// place: a request like the last allocates nothing.
#[derive(Default)]
pub struct PreparedDict {
    req: PreparedRequest,
    /// Which paths the request being read sets (the others are missing).
    written: Vec<bool>,
}

impl PreparedDict {
    /// The request last read.
    pub fn request(&self) -> &PreparedRequest {
        &self.req
    }
}

/// Where [`Trie::prepare_into`] puts what it reads: the value of each program path, and the
/// context's own `resource.vendor_id`.
struct Sink<'a> {
    values: &'a mut [Option<Value>],
    written: &'a mut [bool],
    vendor: &'a mut Option<Value>,
    /// The node whose value is the card scope's vendor: set while the context's own
    /// `resource` is walked, when the program has a card scope.
    vendor_node: Option<usize>,
}

impl Sink<'_> {
    /// The value of path `p`, marked as set by this request.
    fn slot(&mut self, p: u32) -> Option<&mut Option<Value>> {
        *self.written.get_mut(p as usize)? = true;
        self.values.get_mut(p as usize)
    }

    fn put(&mut self, n: &Node, node: usize, v: Value) {
        if self.vendor_node == Some(node) {
            *self.vendor = Some(v.clone());
        }
        if let Some(slot) = n.path.and_then(|p| self.slot(p)) {
            *slot = Some(v);
        }
    }
}

/// A `dict` context read straight into the values of the bundle's paths (see [`Trie::prepare_into`]).
impl Trie {
    /// [`Trie::prepare_into`] on a new request.
    pub fn prepare(&self, dict: &Bound<'_, PyDict>) -> Option<PreparedRequest> {
        let mut read = PreparedDict::default();
        self.prepare_into(dict, &mut read)?;
        Some(read.req)
    }

    /// Reads a `dict` context into the value of each of the bundle's paths, the merged view
    /// resolved here, without building the request's maps: the same parts of the dict are read
    /// and converted as [`Trie::request`] reads them (so the same contexts are accepted), and
    /// every path gets the value the runtime's lookup gives on the request that reads. `None`
    /// when the context is one that [`Trie::request`] may refuse (or when Python raised): the
    /// caller then reads it that way, which says why (and `read` holds no request).
    pub fn prepare_into(&self, dict: &Bound<'_, PyDict>, read: &mut PreparedDict) -> Option<()> {
        let (mut data, mut subject, mut resource, mut action) = (None, None, None, None);
        for (k, v) in dict.iter() {
            // Keys written in the program are interned strings: most keys are these very objects.
            let known = self.roots.iter().find(|(name, _)| k.is(name)).map(|(_, text)| *text);
            let key = match known {
                Some(text) => text,
                None => k.cast::<PyString>().ok()?.to_str().ok()?,
            };
            match key {
                "data" => data = Some(v.cast_into::<PyDict>().ok()?),
                "subject" if v.is_none() => subject = None,
                "subject" => subject = Some(v.cast_into::<PyDict>().ok()?),
                "resource" if v.is_none() => resource = None,
                "resource" => resource = Some(v.cast_into::<PyDict>().ok()?),
                "action" if v.is_none() => action = None,
                "action" => action = Some(v.cast_into::<PyString>().ok()?),
                _ => return None,
            }
        }
        let root = self.nodes.first()?;
        if root.leaf {
            // The empty path: the whole of `data` would be read; left to the general reader.
            return None;
        }
        let parts = read.req.parts_mut();
        parts.values.resize(self.paths, None);
        read.written.clear();
        read.written.resize(self.paths, false);
        *parts.resource_vendor = None;
        let mut sink =
            Sink { values: parts.values, written: &mut read.written, vendor: parts.resource_vendor, vendor_node: None };
        // `data`'s keys are the merged view's roots, except those the context sets itself: those
        // are read (and checked) all the same, as the general reader does, and kept nowhere.
        if let Some(d) = &data {
            for c in &root.children {
                let Some(v) = d.get_item(c.key.bind(d.py())).ok()? else { continue };
                let own = match c.text.as_str() {
                    "subject" => subject.is_some(),
                    "resource" => resource.is_some(),
                    "action" => action.is_some(),
                    _ => false,
                };
                self.fill(&v, c.node, 2, if own { None } else { Some(&mut sink) })?;
            }
        }
        if let (Some(obj), Some(node)) = (&subject, self.subject) {
            self.fill(obj.as_any(), node, 1, Some(&mut sink))?;
        }
        if let (Some(obj), Some(node)) = (&resource, self.resource) {
            sink.vendor_node = self.vendor.filter(|_| self.scoped);
            self.fill(obj.as_any(), node, 1, Some(&mut sink))?;
        }
        // `action` itself; a path below it steps into a string, and is missing.
        let action = match &action {
            Some(a) => Some(a.to_str().ok()?),
            None => None,
        };
        if let (Some(a), Some(p)) = (action, self.action.and_then(|n| self.nodes.get(n)).and_then(|n| n.path))
            && let Some(slot) = sink.slot(p)
        {
            put_str(slot, a);
        }
        match action.filter(|_| self.scoped) {
            Some(a) => put_str(parts.action, a),
            None => *parts.action = None,
        }
        // What this request does not set is missing (a value of an earlier request goes).
        for (slot, written) in sink.values.iter_mut().zip(sink.written.iter()) {
            if !written {
                *slot = None;
            }
        }
        Some(())
    }

    /// Converts what the walk of [`Trie::walk`] reaches from `obj` at `node` into `sink` (each
    /// path's value as the request's lookup finds it), or only checks it without a sink; `None`
    /// where the walk refuses.
    fn fill(&self, obj: &Bound<'_, PyAny>, node: usize, depth: usize, mut sink: Option<&mut Sink>) -> Option<()> {
        let n = self.nodes.get(node)?;
        if n.leaf {
            let Some(sink) = sink else { return to_value(obj, depth).ok().map(drop) };
            let Some(slot) = n.path.and_then(|p| sink.slot(p)) else {
                let v = to_value(obj, depth).ok()?;
                self.fill_below(n, &v, sink);
                sink.put(n, node, v);
                return Some(());
            };
            assign(slot, obj, depth).ok()?;
            // Rare: the card scope's vendor, or paths below a path.
            let vendor = sink.vendor_node == Some(node);
            if vendor || !n.children.is_empty() {
                let v = n.path.and_then(|p| sink.values.get(p as usize)).cloned().flatten()?;
                if vendor {
                    *sink.vendor = Some(v.clone());
                }
                self.fill_below(n, &v, sink);
            }
            return Some(());
        }
        if depth >= MAX_DEPTH {
            return None;
        }
        let py = obj.py();
        if let Ok(dict) = obj.cast::<PyDict>() {
            for c in &n.children {
                if let Some(v) = dict.get_item(c.key.bind(py)).ok()? {
                    self.fill(&v, c.node, depth + 1, sink.as_deref_mut())?;
                }
            }
            return Some(());
        }
        if let Ok(list) = obj.cast::<PyList>() {
            return self.fill_items(n, list.len(), |i| list.get_item(i), depth, sink);
        }
        if let Ok(tuple) = obj.cast::<PyTuple>() {
            return self.fill_items(n, tuple.len(), |i| tuple.get_item(i), depth, sink);
        }
        // A scalar where the paths go on: checked, and every path below is missing.
        to_value(obj, depth).ok().map(drop)
    }

    /// The elements of a list the trie's steps name, as [`Trie::walk_items`] reads them.
    fn fill_items<'py>(
        &self,
        n: &Node,
        len: usize,
        item: impl Fn(usize) -> PyResult<Bound<'py, PyAny>>,
        depth: usize,
        mut sink: Option<&mut Sink>,
    ) -> Option<()> {
        for c in &n.children {
            let Some(i) = c.index.filter(|&i| i < len) else { continue };
            let obj = item(i).ok()?;
            // Two steps naming one element (`1` and `01`): the element is read whole.
            if n.children.iter().any(|o| o.node != c.node && o.index == Some(i)) {
                let v = to_value(&obj, depth + 1).ok()?;
                if let Some(sink) = sink.as_deref_mut() {
                    self.fill_value(c.node, &v, sink);
                }
            } else {
                self.fill(&obj, c.node, depth + 1, sink.as_deref_mut())?;
            }
        }
        Some(())
    }

    /// The paths at and below `node` inside a converted value, stepped into as the request's
    /// lookup steps (recursion bounded by the value's depth, itself at most [`MAX_DEPTH`]).
    fn fill_value(&self, node: usize, v: &Value, sink: &mut Sink) {
        let Some(n) = self.nodes.get(node) else { return };
        self.fill_below(n, v, sink);
        if n.leaf {
            sink.put(n, node, v.clone());
        }
    }

    /// The paths strictly below a node whose value is `v`.
    fn fill_below(&self, n: &Node, v: &Value, sink: &mut Sink) {
        for c in &n.children {
            if let Some(inner) = step(v, &c.text) {
                self.fill_value(c.node, inner, sink);
            }
        }
    }
}

fn too_deep() -> Fault {
    Fault::refused(format!("nested deeper than {MAX_DEPTH} levels"))
}

/// The Python type's name, for messages.
pub fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "object".to_owned())
}

/// A value reduced to its JSON type, for a top-level key whose value the runtime only checks
/// the type of: scalars as they are, `{}` for a dict, `[]` for a list or tuple.
fn shape(obj: &Bound<'_, PyAny>) -> Result<Value, Fault> {
    if obj.is_instance_of::<PyDict>() {
        Ok(Value::Object(Map::new()))
    } else if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        Ok(Value::Array(Vec::new()))
    } else {
        to_value(obj, 0)
    }
}

/// Converts a whole Python value to JSON; `depth` is its nesting level in the context.
pub fn to_value(obj: &Bound<'_, PyAny>, depth: usize) -> Result<Value, Fault> {
    if let Ok(s) = obj.cast::<PyString>() {
        return str_of(s).map(|s| Value::String(s.to_owned()));
    }
    if obj.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if let Ok(i) = obj.cast::<PyInt>() {
        return int_value(i);
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        let x = f.value();
        return Number::from_f64(x).map(Value::Number).ok_or_else(|| {
            // Python's spelling of the value.
            let text = if x.is_nan() {
                "nan"
            } else if x > 0.0 {
                "inf"
            } else {
                "-inf"
            };
            Fault::refused(format!("`{text}` is not a JSON number (JSON has no NaN or infinity)"))
        });
    }
    if depth >= MAX_DEPTH {
        return Err(too_deep());
    }
    if let Ok(dict) = obj.cast::<PyDict>() {
        let mut out = Map::with_capacity(dict.len());
        for (k, v) in dict.iter() {
            let Ok(key) = k.cast::<PyString>() else {
                return Err(Fault::refused(format!("object keys must be strings, not `{}`", type_name(&k))));
            };
            let key = key.to_str().map_err(|_| Fault::refused("a key is not valid Unicode (a lone surrogate)"))?;
            let v = to_value(&v, depth + 1).map_err(|f| f.at(key))?;
            out.insert(key.to_owned(), v);
        }
        return Ok(Value::Object(out));
    }
    if let Ok(list) = obj.cast::<PyList>() {
        let mut out = Vec::with_capacity(list.len());
        for (i, item) in list.iter().enumerate() {
            out.push(to_value(&item, depth + 1).map_err(|f| f.at(&i.to_string()))?);
        }
        return Ok(Value::Array(out));
    }
    if let Ok(tuple) = obj.cast::<PyTuple>() {
        let mut out = Vec::with_capacity(tuple.len());
        for (i, item) in tuple.iter().enumerate() {
            out.push(to_value(&item, depth + 1).map_err(|f| f.at(&i.to_string()))?);
        }
        return Ok(Value::Array(out));
    }
    let name = type_name(obj);
    let hint = match name.as_str() {
        "set" | "frozenset" => " (use a list)",
        "bytes" | "bytearray" => " (decode it to str)",
        "datetime" | "date" | "time" => " (format it as an RFC 3339 string)",
        "Decimal" => " (use int, float or str)",
        _ => "",
    };
    Err(Fault::refused(format!("`{name}` is not a JSON value{hint}")))
}

/// A Python string's text.
fn str_of<'a>(s: &'a Bound<'_, PyString>) -> Result<&'a str, Fault> {
    s.to_str().map_err(|_| Fault::refused("a string with a lone surrogate is not valid Unicode"))
}

/// Puts a string into a value slot, in the string already there when there is one.
fn put_str(slot: &mut Option<Value>, s: &str) {
    match slot {
        Some(Value::String(old)) => {
            old.clear();
            old.push_str(s);
        }
        _ => *slot = Some(Value::String(s.to_owned())),
    }
}

/// Converts `obj` into `slot` as [`to_value`] converts it (the same values, the same
/// refusals), reusing the strings and lists of the value already there.
fn assign(slot: &mut Option<Value>, obj: &Bound<'_, PyAny>, depth: usize) -> Result<(), Fault> {
    match slot {
        Some(v) => assign_value(v, obj, depth),
        None => {
            *slot = Some(to_value(obj, depth)?);
            Ok(())
        }
    }
}

/// [`assign`] into a value (recursion bounded by [`MAX_DEPTH`], as [`to_value`]'s).
fn assign_value(v: &mut Value, obj: &Bound<'_, PyAny>, depth: usize) -> Result<(), Fault> {
    if let Ok(s) = obj.cast::<PyString>() {
        let s = str_of(s)?;
        match v {
            Value::String(old) => {
                old.clear();
                old.push_str(s);
            }
            _ => *v = Value::String(s.to_owned()),
        }
        return Ok(());
    }
    if let (Value::Array(items), Ok(list)) = (&mut *v, obj.cast::<PyList>()) {
        if depth >= MAX_DEPTH {
            return Err(too_deep());
        }
        items.truncate(list.len());
        for (i, item) in list.iter().enumerate() {
            let done = match items.get_mut(i) {
                Some(old) => assign_value(old, &item, depth + 1),
                None => to_value(&item, depth + 1).map(|new| items.push(new)),
            };
            done.map_err(|f| f.at(&i.to_string()))?;
        }
        return Ok(());
    }
    *v = to_value(obj, depth)?;
    Ok(())
}

/// An integer as JSON text would carry it: i64 or u64 exactly, beyond that the nearest f64 (as
/// serde_json reads a long integer literal), refused when even that overflows.
fn int_value(i: &Bound<'_, PyInt>) -> Result<Value, Fault> {
    if let Ok(v) = i.extract::<i64>() {
        return Ok(Value::from(v));
    }
    if let Ok(v) = i.extract::<u64>() {
        return Ok(Value::from(v));
    }
    match i.extract::<f64>().ok().and_then(Number::from_f64) {
        Some(n) => Ok(Value::Number(n)),
        None => Err(Fault::refused("an integer too large for a JSON number")),
    }
}
