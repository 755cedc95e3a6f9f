//! String regions: the non-empty cells of the Boolean algebra that a path's string constants
//! generate, each with its shortest (and, among those, most readable) member.
//!
//! What cuts the strings of one path:
//! - **literals** (from `==`, `!=`, `in`, `not in`, and the finite languages of literal-left
//!   atoms such as `"abc" starts_with p`): each literal is a cell of its own;
//! - **order constants** (`<`, `<=`, `>`, `>=`): strings are ordered by code point, which is the
//!   byte order of UTF-8, so one explicit automaton tracks, byte by byte, where a string stands
//!   against every order constant, which literal it still may be, and which `starts_with`
//!   prefixes it has passed (a trie);
//! - **other patterns** (`ends_with`, `contains`, `matches`): one `regex-automata` dense DFA each
//!   (unanchored, all matches, with a size limit), its "has matched" bit sticky.
//!
//! The cells are found by a breadth-first search over the product of those automata and a UTF-8
//! validator, with the bytes grouped into joint equivalence classes: every reachable product
//! state at a character boundary names a cell (its acceptance vector), and the path to it is the
//! cell's witness. The search is complete, so the cells are exact. It has a state budget; over
//! it, [`cells`] gives up and the caller keeps fewer constants exact (the rest are opaque).

use regex_automata::dfa::{Automaton, StartKind, dense};
use regex_automata::util::{primitives::StateID, start};
use regex_automata::{Anchored, MatchKind};
use std::cmp::Ordering;
use std::collections::{HashMap, VecDeque};

use super::bdd::FxBuild;

/// A pattern atom's language (strings on which it holds).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Pattern {
    Prefix(String),
    Suffix(String),
    Substring(String),
    Regex(String),
}

impl Pattern {
    /// Whether `s` is in the language (the runtime's semantics, for classifying values).
    pub fn holds(&self, s: &str, re: Option<&regex::Regex>) -> bool {
        match self {
            Pattern::Prefix(p) => s.starts_with(p.as_str()),
            Pattern::Suffix(p) => s.ends_with(p.as_str()),
            Pattern::Substring(p) => s.contains(p.as_str()),
            Pattern::Regex(_) => re.is_some_and(|r| r.is_match(s)),
        }
    }

    fn regex_source(&self) -> String {
        match self {
            Pattern::Prefix(p) => format!(r"\A(?:{})", regex_syntax::escape(p)),
            Pattern::Suffix(p) => format!(r"(?:{})\z", regex_syntax::escape(p)),
            Pattern::Substring(p) => regex_syntax::escape(p),
            Pattern::Regex(r) => r.clone(),
        }
    }
}

/// Size limits of the construction.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes of one pattern's DFA.
    pub dfa_bytes: usize,
    /// Bytes of all the DFAs of one path.
    pub total_dfa_bytes: usize,
    /// Patterns of one path in the product (the others are left out).
    pub patterns: usize,
    /// Product states explored.
    pub states: usize,
}

/// One cell: the literal it is (if it is one), its order against every order constant, whether
/// each pattern holds (`None` for a pattern kept out of the product), and a member.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CellKey {
    pub literal: Option<usize>,
    pub signs: Vec<Ordering>,
    pub pats: Vec<Option<bool>>,
}

#[derive(Debug, Clone)]
pub struct Cell {
    pub key: CellKey,
    pub witness: String,
}

/// The explicit automaton for literals, order constants and prefix patterns: a trie of their
/// bytes, plus one absorbing state per (order vector, deepest prefix pattern passed) once a
/// string has left the trie. Prefixes live here rather than in DFAs because a bundle may test
/// hundreds of them on one path, and in the trie they cost their length.
struct Trie {
    children: HashMap<(u32, u8), u32, FxBuild>,
    prefix: Vec<Vec<u8>>,
    literal_at: Vec<Option<usize>>,
    /// The deepest node on the way to each node that ends a prefix pattern (itself included).
    deepest: Vec<Option<u32>>,
    ends_prefix: Vec<bool>,
    orders: Vec<Vec<u8>>,
    off: HashMap<(Vec<Ordering>, Option<u32>), u32, FxBuild>,
    off_state: Vec<(Vec<Ordering>, Option<u32>)>,
    /// For each byte, its class: bytes used by no constant between two used ones are alike.
    class: [u16; 256],
}

impl Trie {
    fn new(literals: &[String], orders: &[String], prefixes: &[&str]) -> Trie {
        let mut t = Trie {
            children: HashMap::default(),
            prefix: vec![Vec::new()],
            literal_at: vec![None],
            deepest: vec![None],
            ends_prefix: vec![false],
            orders: orders.iter().map(|o| o.as_bytes().to_vec()).collect(),
            off: HashMap::default(),
            off_state: Vec::new(),
            class: [0; 256],
        };
        let mut used = [false; 256];
        let mut insert = |t: &mut Trie, bytes: &[u8]| -> u32 {
            let mut node = 0u32;
            for &b in bytes {
                if let Some(u) = used.get_mut(usize::from(b)) {
                    *u = true;
                }
                node = match t.children.get(&(node, b)) {
                    Some(c) => *c,
                    None => {
                        let id = u32::try_from(t.prefix.len()).unwrap_or(u32::MAX);
                        let mut p = t.prefix.get(node as usize).cloned().unwrap_or_default();
                        p.push(b);
                        t.prefix.push(p);
                        t.literal_at.push(None);
                        t.deepest.push(None);
                        t.ends_prefix.push(false);
                        t.children.insert((node, b), id);
                        id
                    }
                };
            }
            node
        };
        for (i, lit) in literals.iter().enumerate() {
            let node = insert(&mut t, lit.as_bytes());
            if let Some(slot) = t.literal_at.get_mut(node as usize) {
                *slot = Some(i);
            }
        }
        for p in prefixes {
            let node = insert(&mut t, p.as_bytes());
            if let Some(slot) = t.ends_prefix.get_mut(node as usize) {
                *slot = true;
            }
        }
        // Nodes are created parents first, so one pass in id order fills `deepest` (the root
        // first: the empty prefix holds for every string).
        if t.ends_prefix.first().copied().unwrap_or(false)
            && let Some(slot) = t.deepest.first_mut()
        {
            *slot = Some(0);
        }
        let mut parent: Vec<u32> = vec![0; t.prefix.len()];
        for (&(from, _), &to) in &t.children {
            if let Some(slot) = parent.get_mut(to as usize) {
                *slot = from;
            }
        }
        for id in 1..t.prefix.len() {
            let inherited = parent.get(id).and_then(|p| t.deepest.get(*p as usize)).copied().flatten();
            let own = t.ends_prefix.get(id).copied().unwrap_or(false);
            if let Some(slot) = t.deepest.get_mut(id) {
                *slot = if own { Some(u32::try_from(id).unwrap_or(u32::MAX)) } else { inherited };
            }
        }
        let mut class = 0u16;
        for b in 0..256usize {
            let u = used.get(b).copied().unwrap_or(false);
            let prev_used = b > 0 && used.get(b - 1).copied().unwrap_or(false);
            if b > 0 && (u || prev_used) {
                class += 1;
            }
            if let Some(c) = t.class.get_mut(b) {
                *c = class;
            }
        }
        t
    }

    fn nodes(&self) -> u32 {
        u32::try_from(self.prefix.len()).unwrap_or(u32::MAX)
    }

    fn signs_of(&self, s: &[u8]) -> Vec<Ordering> {
        self.orders.iter().map(|o| s.cmp(o.as_slice())).collect()
    }

    fn step(&mut self, state: u32, b: u8) -> u32 {
        if state >= self.nodes() {
            return state;
        }
        if let Some(c) = self.children.get(&(state, b)) {
            return *c;
        }
        let mut u = self.prefix.get(state as usize).cloned().unwrap_or_default();
        u.push(b);
        let key = (self.signs_of(&u), self.deepest.get(state as usize).copied().flatten());
        if let Some(id) = self.off.get(&key) {
            return *id;
        }
        let id = self.nodes() + u32::try_from(self.off_state.len()).unwrap_or(u32::MAX);
        self.off.insert(key.clone(), id);
        self.off_state.push(key);
        id
    }

    /// The literal a state is (at a string's end), its order against every order constant, and
    /// the bytes every prefix pattern that holds is a prefix of.
    fn output(&self, state: u32) -> (Option<usize>, Vec<Ordering>, &[u8]) {
        if state < self.nodes() {
            let lit = self.literal_at.get(state as usize).copied().flatten();
            let w = self.prefix.get(state as usize).map_or(&[][..], Vec::as_slice);
            (lit, self.signs_of(w), w)
        } else {
            let k = (state - self.nodes()) as usize;
            let (signs, deepest) = self.off_state.get(k).cloned().unwrap_or_default();
            let w = deepest.and_then(|d| self.prefix.get(d as usize)).map_or(&[][..], Vec::as_slice);
            (None, signs, w)
        }
    }
}

/// UTF-8 validation as an automaton: 0 is a character boundary, `REJECT` is dead.
const UTF8_REJECT: u32 = 8;

fn utf8_step(state: u32, b: u8) -> u32 {
    match (state, b) {
        (0, 0x00..=0x7F) => 0,
        (0, 0xC2..=0xDF) => 1,
        (0, 0xE0) => 4,
        (0, 0xE1..=0xEC | 0xEE..=0xEF) => 2,
        (0, 0xED) => 5,
        (0, 0xF0) => 6,
        (0, 0xF1..=0xF3) => 3,
        (0, 0xF4) => 7,
        (1, 0x80..=0xBF) => 0,
        (2, 0x80..=0xBF) => 1,
        (3, 0x80..=0xBF) => 2,
        (4, 0xA0..=0xBF) => 1,
        (5, 0x80..=0x9F) => 1,
        (6, 0x90..=0xBF) => 2,
        (7, 0x80..=0x8F) => 2,
        _ => UTF8_REJECT,
    }
}

fn utf8_class(b: u8) -> u8 {
    match b {
        0x00..=0x7F => 0,
        0x80..=0x8F => 1,
        0x90..=0x9F => 2,
        0xA0..=0xBF => 3,
        0xC0..=0xC1 => 4,
        0xC2..=0xDF => 5,
        0xE0 => 6,
        0xE1..=0xEC => 7,
        0xED => 8,
        0xEE..=0xEF => 9,
        0xF0 => 10,
        0xF1..=0xF3 => 11,
        0xF4 => 12,
        0xF5..=0xFF => 13,
    }
}

/// How readable a byte is in a witness (lower first).
fn niceness(b: u8) -> u16 {
    match b {
        b'a'..=b'z' => u16::from(b - b'a'),
        b'0'..=b'9' => 30 + u16::from(b - b'0'),
        b'A'..=b'Z' => 40 + u16::from(b - b'A'),
        b'-' | b'_' | b'.' | b' ' => 70 + u16::from(b % 8),
        0x21..=0x7E => 100 + u16::from(b),
        0x80..=0xFF => 300 + u16::from(b),
        _ => 600 + u16::from(b),
    }
}

const MATCHED: u32 = u32::MAX;
const DEAD: u32 = u32::MAX - 1;

struct PatternDfa {
    dfa: dense::DFA<Vec<u32>>,
    start: StateID,
}

impl PatternDfa {
    fn build(p: &Pattern, limits: &Limits) -> Option<PatternDfa> {
        let config = dense::DFA::config()
            .start_kind(StartKind::Unanchored)
            .match_kind(MatchKind::All)
            .dfa_size_limit(Some(limits.dfa_bytes))
            .determinize_size_limit(Some(limits.dfa_bytes.saturating_mul(2)));
        let dfa = dense::Builder::new().configure(config).build(&p.regex_source()).ok()?;
        let start = dfa.start_state(&start::Config::new().anchored(Anchored::No)).ok()?;
        Some(PatternDfa { dfa, start })
    }

    fn classify(&self, s: StateID) -> Option<u32> {
        if self.dfa.is_match_state(s) {
            Some(MATCHED)
        } else if self.dfa.is_dead_state(s) {
            Some(DEAD)
        } else if self.dfa.is_quit_state(s) {
            None
        } else {
            Some(s.as_u32())
        }
    }

    fn initial(&self) -> Option<u32> {
        self.classify(self.start)
    }

    fn step(&self, state: u32, b: u8) -> Option<u32> {
        if state == MATCHED || state == DEAD {
            return Some(state);
        }
        let id = StateID::new(state as usize).ok()?;
        self.classify(self.dfa.next_state(id, b))
    }

    fn accepts(&self, state: u32) -> Option<bool> {
        match state {
            MATCHED => Some(true),
            DEAD => Some(false),
            s => {
                let id = StateID::new(s as usize).ok()?;
                let eoi = self.dfa.next_eoi_state(id);
                if self.dfa.is_quit_state(eoi) { None } else { Some(self.dfa.is_match_state(eoi)) }
            }
        }
    }

    fn class(&self, b: u8) -> u8 {
        self.dfa.byte_classes().get(b)
    }
}

/// The search ran over its budget or met a state it cannot read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Undecided;

/// The cells found, and which patterns took part (a pattern whose DFA cannot be built within
/// the limits, or at all — e.g. a Unicode word boundary — is left out: its entries are `None`).
#[derive(Debug, Clone)]
pub struct Cells {
    pub cells: Vec<Cell>,
    pub used: Vec<bool>,
}

/// Every non-empty cell over `literals` (sorted, distinct; order constants included), `orders`
/// and `patterns` (`want[k]` false keeps pattern `k` out).
pub fn cells(
    literals: &[String],
    orders: &[String],
    patterns: &[Pattern],
    want: &[bool],
    limits: &Limits,
) -> Result<Cells, Undecided> {
    // Prefix patterns go into the trie; the others get a DFA each, within the caps.
    let in_trie: Vec<bool> = patterns
        .iter()
        .enumerate()
        .map(|(i, p)| want.get(i).copied().unwrap_or(false) && matches!(p, Pattern::Prefix(_)))
        .collect();
    let prefixes: Vec<&str> = patterns
        .iter()
        .zip(&in_trie)
        .filter_map(|(p, t)| match (p, t) {
            (Pattern::Prefix(s), true) => Some(s.as_str()),
            _ => None,
        })
        .collect();
    let mut trie = Trie::new(literals, orders, &prefixes);
    // Only built DFAs are product components; `comp_of[i]` is pattern i's component.
    let mut dfas: Vec<PatternDfa> = Vec::new();
    let mut comp_of: Vec<Option<usize>> = Vec::with_capacity(patterns.len());
    let mut bytes = 0usize;
    for (i, p) in patterns.iter().enumerate() {
        let wanted = want.get(i).copied().unwrap_or(false)
            && !in_trie.get(i).copied().unwrap_or(false)
            && dfas.len() < limits.patterns
            && bytes < limits.total_dfa_bytes;
        match if wanted { PatternDfa::build(p, limits) } else { None } {
            Some(d) => {
                bytes = bytes.saturating_add(d.dfa.memory_usage());
                comp_of.push(Some(dfas.len()));
                dfas.push(d);
            }
            None => comp_of.push(None),
        }
    }
    let used: Vec<bool> = comp_of.iter().zip(&in_trie).map(|(c, t)| c.is_some() || *t).collect();
    // Joint byte classes, each with its most readable representative.
    let mut by_sig: HashMap<Vec<u16>, u8> = HashMap::new();
    for b in 0..=255u8 {
        let mut sig = vec![u16::from(utf8_class(b)), trie.class.get(usize::from(b)).copied().unwrap_or(0)];
        sig.extend(dfas.iter().map(|d| u16::from(d.class(b))));
        let rep = by_sig.entry(sig).or_insert(b);
        if niceness(b) < niceness(*rep) {
            *rep = b;
        }
    }
    let mut reps: Vec<u8> = by_sig.into_values().collect();
    reps.sort_by_key(|b| niceness(*b));

    let mut start = vec![0u32, 0u32];
    for d in &dfas {
        start.push(d.initial().ok_or(Undecided)?);
    }
    let mut index: HashMap<Vec<u32>, u32, FxBuild> = HashMap::default();
    let mut states: Vec<Vec<u32>> = Vec::new();
    let mut parent: Vec<(u32, u8)> = Vec::new();
    index.insert(start.clone(), 0);
    states.push(start);
    parent.push((u32::MAX, 0));
    let mut queue: VecDeque<u32> = VecDeque::from([0]);
    let mut work = 0usize;
    let max_work = limits.states.saturating_mul(1000);
    let mut seen_cells: HashMap<CellKey, (), FxBuild> = HashMap::default();
    let mut out: Vec<Cell> = Vec::new();
    while let Some(sid) = queue.pop_front() {
        let Some(state) = states.get(sid as usize).cloned() else { continue };
        let (utf8, rest) = match state.split_first() {
            Some((u, r)) => (*u, r),
            None => continue,
        };
        let (trie_state, pat_states) = match rest.split_first() {
            Some((t, p)) => (*t, p),
            None => continue,
        };
        if utf8 == 0 {
            let (literal, signs, passed) = trie.output(trie_state);
            let mut pats = Vec::with_capacity(patterns.len());
            for ((c, p), t) in comp_of.iter().zip(patterns).zip(&in_trie) {
                pats.push(match (c, p, t) {
                    (Some(k), _, _) => match (dfas.get(*k), pat_states.get(*k)) {
                        (Some(d), Some(s)) => Some(d.accepts(*s).ok_or(Undecided)?),
                        _ => return Err(Undecided),
                    },
                    (None, Pattern::Prefix(pre), true) => Some(passed.starts_with(pre.as_bytes())),
                    _ => None,
                });
            }
            let key = CellKey { literal, signs, pats };
            if !seen_cells.contains_key(&key) {
                seen_cells.insert(key.clone(), ());
                let witness = witness_of(&parent, sid);
                let witness = String::from_utf8(witness).map_err(|_| Undecided)?;
                out.push(Cell { key, witness });
            }
        }
        for &b in &reps {
            let u = utf8_step(utf8, b);
            if u == UTF8_REJECT {
                continue;
            }
            // Work, not only states, is bounded: a wide product is slow long before it is big.
            work = work.saturating_add(2 + dfas.len());
            if work > max_work {
                return Err(Undecided);
            }
            let mut next = Vec::with_capacity(state.len());
            next.push(u);
            next.push(trie.step(trie_state, b));
            for (d, s) in dfas.iter().zip(pat_states) {
                next.push(d.step(*s, b).ok_or(Undecided)?);
            }
            if index.contains_key(&next) {
                continue;
            }
            if states.len() >= limits.states {
                return Err(Undecided);
            }
            let id = u32::try_from(states.len()).map_err(|_| Undecided)?;
            index.insert(next.clone(), id);
            states.push(next);
            parent.push((sid, b));
            queue.push_back(id);
        }
    }
    Ok(Cells { cells: out, used })
}

fn witness_of(parent: &[(u32, u8)], mut sid: u32) -> Vec<u8> {
    let mut bytes = Vec::new();
    while let Some(&(p, b)) = parent.get(sid as usize) {
        if p == u32::MAX {
            break;
        }
        bytes.push(b);
        sid = p;
    }
    bytes.reverse();
    bytes
}

/// The cell key of a concrete string (the runtime's semantics), to find its cell.
pub fn key_of(
    s: &str,
    literals: &[String],
    orders: &[String],
    patterns: &[Pattern],
    use_pattern: &[bool],
    regexes: &[Option<regex::Regex>],
) -> CellKey {
    let literal = literals.binary_search_by(|l| l.as_str().cmp(s)).ok();
    let signs = orders.iter().map(|o| s.cmp(o.as_str())).collect();
    let pats = patterns
        .iter()
        .enumerate()
        .map(|(i, p)| {
            use_pattern.get(i).copied().unwrap_or(false).then(|| p.holds(s, regexes.get(i).and_then(Option::as_ref)))
        })
        .collect();
    CellKey { literal, signs, pats }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    const LIMITS: Limits = Limits { dfa_bytes: 1 << 20, total_dfa_bytes: 1 << 26, patterns: 128, states: 1 << 16 };

    fn all(n: usize) -> Vec<bool> {
        vec![true; n]
    }

    #[test]
    fn literals_and_orders() {
        let lits = vec!["b".to_owned(), "bc".to_owned(), "d".to_owned()];
        let orders = vec!["bc".to_owned()];
        let cells = cells(&lits, &orders, &[], &[], &LIMITS).unwrap().cells;
        // "b", "bc", "d" and non-literals below and above "bc".
        assert_eq!(cells.len(), 5, "{cells:?}");
        for c in &cells {
            let k = key_of(&c.witness, &lits, &orders, &[], &[], &[]);
            assert_eq!(k, c.key);
        }
    }

    #[test]
    fn patterns_cells_are_exact() {
        let pats = vec![
            Pattern::Prefix("ab".into()),
            Pattern::Suffix("é".into()),
            Pattern::Regex("^[0-9]+$".into()),
            Pattern::Substring("x".into()),
        ];
        let lits = vec!["abé".to_owned()];
        let cells = cells(&lits, &[], &pats, &all(4), &LIMITS).unwrap().cells;
        let res: Vec<Option<regex::Regex>> =
            pats.iter().map(|p| if let Pattern::Regex(r) = p { regex::Regex::new(r).ok() } else { None }).collect();
        for c in &cells {
            assert_eq!(key_of(&c.witness, &lits, &[], &pats, &all(4), &res), c.key, "{}", c.witness);
        }
        // prefix ab & digits only is empty; ab & é & x & not literal exists.
        assert!(!cells.iter().any(|c| c.key.pats[0] == Some(true) && c.key.pats[2] == Some(true)));
        assert!(cells.iter().any(|c| c.key.literal.is_none()
            && c.key.pats == vec![Some(true), Some(true), Some(false), Some(true)]));
    }

    #[test]
    fn prefixes_in_the_trie_are_exact_and_cheap() {
        let mut pats: Vec<Pattern> = (0..300).map(|k| Pattern::Prefix(format!("p{k}/"))).collect();
        pats.push(Pattern::Prefix(String::new()));
        pats.push(Pattern::Prefix("p1".into()));
        pats.push(Pattern::Regex("^p1[0-9]/x$".into()));
        let lits = vec!["p1".to_owned(), "p10/".to_owned()];
        let n = pats.len();
        let c = cells(&lits, &["p2".to_owned()], &pats, &all(n), &LIMITS).unwrap();
        assert!(c.used.iter().all(|u| *u));
        let res: Vec<Option<regex::Regex>> =
            pats.iter().map(|p| if let Pattern::Regex(r) = p { regex::Regex::new(r).ok() } else { None }).collect();
        for cell in &c.cells {
            assert_eq!(
                key_of(&cell.witness, &lits, &["p2".to_owned()], &pats, &c.used, &res),
                cell.key,
                "{}",
                cell.witness
            );
        }
        // "p1x" (p1 only), "p10/" (literal), "p10/a" (p1 and p10/), "p12/x" (p1, p12/, the regex)...
        assert!(
            c.cells.iter().any(|cell| cell.witness.starts_with("p12/") && cell.key.pats.last() == Some(&Some(true)))
        );
    }

    #[test]
    fn word_boundaries_are_left_out_not_guessed() {
        let pats = vec![Pattern::Regex(r"\bcat\b".into()), Pattern::Prefix("c".into())];
        let c = cells(&[], &[], &pats, &all(2), &LIMITS).unwrap();
        assert_eq!(c.used, vec![false, true]);
        assert!(c.cells.iter().all(|c| c.key.pats[0].is_none()));
    }
}
