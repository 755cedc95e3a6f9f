//! The `.vdc` artifact: a versioned, checksummed binary form of a [`Program`].
//!
//! Layout (all integers little-endian):
//! ```text
//! magic        8 bytes   0x7f "VERDICT"
//! format       u32       FORMAT_VERSION
//! toolchain    u16 len + UTF-8   the version of the toolchain that wrote it
//! body         u64 len + bytes   the program, section by section (see `write_body`)
//! checksum     32 bytes  SHA-256 of everything before it
//! ```
//! Loading reads and checks the header first (magic, then format version — a different version
//! is refused by name), then the checksum over the whole file, then decodes the body with
//! bounds-checked reads (no length is trusted beyond the bytes present), then verifies the
//! program ([`Program::verify`]) before an engine exists. Any failure is an [`ArtifactError`]:
//! never a panic, never a decision.
//!
//! Format versions: 1, the first; 2, the card scope carries the card's condition ids (so a
//! service that loads an artifact knows which conditions it must supply from assertions).

use crate::program::{
    Arg, AtomDef, CardScope, DefCode, Dispatch, ExternCode, Instant, Piece, PolicyCode, Program, RuleCode, SeriesCode,
    Site, TermCode,
};
use crate::value::Type;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::fmt;
use verdict_vocab::AtomOp;
use verdict_vocab::{Arith, Func, NowField, TypeName, Window};

pub const MAGIC: [u8; 8] = *b"\x7fVERDICT";
pub const FORMAT_VERSION: u32 = 3;
/// The version of this toolchain, written into every artifact.
pub const TOOLCHAIN_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Why an artifact was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArtifactError {
    NotAnArtifact,
    WrongFormat { found: u32, toolchain: String },
    Truncated { at: usize },
    ChecksumMismatch,
    Malformed { at: usize, what: String },
    Invalid(crate::program::VerifyError),
}

impl fmt::Display for ArtifactError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArtifactError::NotAnArtifact => write!(f, "not a Verdict artifact (bad magic number)"),
            ArtifactError::WrongFormat { found, toolchain } => write!(
                f,
                "artifact format version {found} (written by verdict {toolchain}) cannot be read: this toolchain reads format version {FORMAT_VERSION}; recompile the bundle"
            ),
            ArtifactError::Truncated { at } => write!(f, "artifact is truncated (at byte {at})"),
            ArtifactError::ChecksumMismatch => {
                write!(f, "artifact checksum mismatch: the file is corrupted or was modified")
            }
            ArtifactError::Malformed { at, what } => write!(f, "malformed artifact at byte {at}: {what}"),
            ArtifactError::Invalid(e) => write!(f, "artifact refused by the verifier: {e}"),
        }
    }
}

impl std::error::Error for ArtifactError {}

/// Whether the bytes start like an artifact (used to recognise artifacts by header, not name).
pub fn is_artifact(bytes: &[u8]) -> bool {
    bytes.starts_with(&MAGIC)
}

// ---- writing -------------------------------------------------------------------------------

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn i128(&mut self, v: i128) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn len(&mut self, n: usize) {
        self.u32(u32::try_from(n).unwrap_or(u32::MAX));
    }
    fn str(&mut self, s: &str) {
        self.len(s.len());
        self.0.extend_from_slice(s.as_bytes());
    }
    fn strs(&mut self, v: &[String]) {
        self.len(v.len());
        for s in v {
            self.str(s);
        }
    }
    fn u32s(&mut self, v: &[u32]) {
        self.len(v.len());
        for x in v {
            self.u32(*x);
        }
    }
    fn json(&mut self, v: &Value) {
        self.str(&v.to_string());
    }
    fn opt_u32(&mut self, v: Option<u32>) {
        match v {
            None => self.u8(0),
            Some(x) => {
                self.u8(1);
                self.u32(x);
            }
        }
    }
    fn arg(&mut self, a: Arg) {
        match a {
            Arg::None => {
                self.u8(0);
                self.u32(0);
            }
            Arg::Path(p) => {
                self.u8(1);
                self.u32(p);
            }
            Arg::Const(c) => {
                self.u8(2);
                self.u32(c);
            }
            Arg::Term(t) => {
                self.u8(3);
                self.u32(t);
            }
        }
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    /// A type: its heads from the outside in (`list`, `list`, …, then a non-list head).
    fn ty(&mut self, t: &Type) {
        let mut t = t;
        while let Type::List(inner) = t {
            self.u8(TypeName::List.code());
            t = inner;
        }
        self.u8(t.head().code());
    }
    fn template(&mut self, pieces: Option<&Vec<Piece>>) {
        let Some(pieces) = pieces else {
            self.u8(0);
            return;
        };
        self.u8(1);
        self.len(pieces.len());
        for p in pieces {
            match p {
                Piece::Text(s) => {
                    self.u8(0);
                    self.str(s);
                }
                Piece::Term { arg, decimals } => {
                    self.u8(1);
                    self.arg(*arg);
                    match decimals {
                        None => self.u8(0xff),
                        Some(d) => self.u8(*d),
                    }
                }
            }
        }
    }
    fn term(&mut self, t: &TermCode) {
        match t {
            TermCode::Arith { op, lhs, rhs } => {
                self.u8(1);
                self.u8(op.code());
                self.arg(*lhs);
                self.arg(*rhs);
            }
            TermCode::Func { func, arg } => {
                self.u8(2);
                self.u8(func.code());
                self.arg(*arg);
            }
            TermCode::Now { field } => {
                self.u8(3);
                self.u8(field.code());
            }
            TermCode::State { series, window, seconds } => {
                self.u8(4);
                self.u32(*series);
                self.u8(window.code());
                self.u32(*seconds);
            }
            TermCode::Extern { ext, args } => {
                self.u8(5);
                self.u32(*ext);
                self.len(args.len());
                for a in args {
                    self.arg(*a);
                }
            }
        }
    }
    fn instant(&mut self, i: &Option<Instant>) {
        match i {
            None => self.u8(0),
            Some(i) => {
                self.u8(1);
                self.str(&i.text);
                self.i128(i.nanos);
            }
        }
    }
}

/// Serialises a program into artifact bytes.
pub fn write(p: &Program) -> Vec<u8> {
    let mut body = Writer(Vec::new());
    write_body(&mut body, p);
    let mut out = Writer(Vec::with_capacity(body.0.len() + 64));
    out.0.extend_from_slice(&MAGIC);
    out.u32(FORMAT_VERSION);
    out.0.extend_from_slice(&u16::try_from(TOOLCHAIN_VERSION.len()).unwrap_or(0).to_le_bytes());
    out.0.extend_from_slice(TOOLCHAIN_VERSION.as_bytes());
    out.0.extend_from_slice(&(body.0.len() as u64).to_le_bytes());
    out.0.extend_from_slice(&body.0);
    let digest = Sha256::digest(&out.0);
    out.0.extend_from_slice(&digest);
    out.0
}

fn write_body(w: &mut Writer, p: &Program) {
    w.str(&p.bundle_id);
    w.str(&p.version);
    w.str(&p.fingerprint);
    w.strs(&p.effects);
    w.u8(u8::from(p.combine_first));
    w.instant(&p.effective_from);
    w.instant(&p.effective_until);
    match &p.card_scope {
        None => w.u8(0),
        Some(s) => {
            w.u8(1);
            w.str(&s.vendor_id);
            w.strs(&s.allowed_actions);
            w.strs(&s.condition_ids);
        }
    }
    w.len(p.paths.len());
    for path in &p.paths {
        w.strs(path);
    }
    w.strs(&p.path_texts);
    w.len(p.consts.len());
    for c in &p.consts {
        w.json(c);
    }
    w.len(p.atoms.len());
    for a in &p.atoms {
        w.u8(a.op.code());
        w.arg(a.lhs);
        w.arg(a.rhs);
    }
    w.len(p.sites.len());
    for s in &p.sites {
        w.str(&s.text);
        w.u32(s.span[0]);
        w.u32(s.span[1]);
        w.u32(s.line);
        w.u32(s.column);
    }
    w.u32s(&p.code);
    w.len(p.defs.len());
    for d in &p.defs {
        w.str(&d.name);
        w.u32(d.entry);
    }
    w.len(p.policies.len());
    for pol in &p.policies {
        w.str(&pol.id);
        w.opt_u32(pol.default);
        w.str(&pol.default_reason);
        w.len(pol.rules.len());
        for r in &pol.rules {
            w.str(&r.id);
            w.u32(r.effect);
            w.u32(r.entry);
            w.str(&r.reason);
            w.strs(&r.codes);
            w.json(&Value::Object(r.obligations.clone()));
            w.template(r.template.as_ref());
        }
        w.u32s(&pol.order);
        match &pol.dispatch {
            None => w.u8(0),
            Some(d) => {
                w.u8(1);
                w.u32(d.path);
                w.len(d.keys.len());
                for (k, list) in &d.keys {
                    w.str(k);
                    w.u32s(list);
                }
                w.u32s(&d.other);
            }
        }
    }
    w.len(p.terms.len());
    for t in &p.terms {
        w.term(t);
    }
    w.strs(&p.term_texts);
    w.len(p.externs.len());
    for e in &p.externs {
        w.str(&e.name);
        w.len(e.params.len());
        for t in &e.params {
            w.ty(t);
        }
        w.ty(&e.returns);
    }
    w.len(p.series.len());
    for s in &p.series {
        w.str(&s.name);
        w.arg(s.add);
        w.u32s(&s.key);
        w.u32s(&s.on);
        w.u8(u8::from(s.hold));
    }
    w.str(&p.timezone);
    w.u64(p.hold_ttl);
    w.len(p.schema.len());
    for (path, t) in &p.schema {
        w.u32(*path);
        w.ty(t);
    }
    w.u32s(&p.required);
}

// ---- reading -------------------------------------------------------------------------------

struct Reader<'b> {
    bytes: &'b [u8],
    pos: usize,
    /// Offset of `bytes` in the file, for error positions.
    base: usize,
}

impl<'b> Reader<'b> {
    fn take(&mut self, n: usize) -> Result<&'b [u8], ArtifactError> {
        let end = self.pos.checked_add(n).ok_or(ArtifactError::Truncated { at: self.base + self.pos })?;
        let s = self.bytes.get(self.pos..end).ok_or(ArtifactError::Truncated { at: self.base + self.pos })?;
        self.pos = end;
        Ok(s)
    }
    fn malformed(&self, what: impl Into<String>) -> ArtifactError {
        ArtifactError::Malformed { at: self.base + self.pos, what: what.into() }
    }
    fn u8(&mut self) -> Result<u8, ArtifactError> {
        self.take(1).map(|b| b.first().copied().unwrap_or(0))
    }
    fn u32(&mut self) -> Result<u32, ArtifactError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes(b.try_into().map_err(|_| self.malformed("u32"))?))
    }
    fn i128(&mut self) -> Result<i128, ArtifactError> {
        let b = self.take(16)?;
        Ok(i128::from_le_bytes(b.try_into().map_err(|_| self.malformed("i128"))?))
    }
    /// A count of items each at least `min_size` bytes: refused when the bytes left cannot hold
    /// them, so a corrupted length never causes a huge allocation.
    fn count(&mut self, min_size: usize) -> Result<usize, ArtifactError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_size.max(1)) > self.bytes.len().saturating_sub(self.pos) {
            return Err(self.malformed(format!("count {n} exceeds the remaining bytes")));
        }
        Ok(n)
    }
    fn str(&mut self) -> Result<String, ArtifactError> {
        let n = self.count(1)?;
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| self.malformed("string is not UTF-8"))
    }
    fn strs(&mut self) -> Result<Vec<String>, ArtifactError> {
        let n = self.count(4)?;
        (0..n).map(|_| self.str()).collect()
    }
    fn u32s(&mut self) -> Result<Vec<u32>, ArtifactError> {
        let n = self.count(4)?;
        (0..n).map(|_| self.u32()).collect()
    }
    fn json(&mut self) -> Result<Value, ArtifactError> {
        let s = self.str()?;
        serde_json::from_str(&s).map_err(|e| self.malformed(format!("constant: {e}")))
    }
    fn flag(&mut self) -> Result<bool, ArtifactError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            t => Err(self.malformed(format!("bad tag {t}"))),
        }
    }
    fn opt_u32(&mut self) -> Result<Option<u32>, ArtifactError> {
        Ok(if self.flag()? { Some(self.u32()?) } else { None })
    }
    fn arg(&mut self) -> Result<Arg, ArtifactError> {
        let tag = self.u8()?;
        let v = self.u32()?;
        match tag {
            0 => Ok(Arg::None),
            1 => Ok(Arg::Path(v)),
            2 => Ok(Arg::Const(v)),
            3 => Ok(Arg::Term(v)),
            t => Err(self.malformed(format!("bad operand tag {t}"))),
        }
    }
    fn u64(&mut self) -> Result<u64, ArtifactError> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().map_err(|_| self.malformed("u64"))?))
    }
    /// A type, read without recursion: list heads are counted (at most the nesting limit),
    /// then the element head closes them.
    fn ty(&mut self) -> Result<Type, ArtifactError> {
        let mut lists = 0usize;
        loop {
            let code = self.u8()?;
            let head = TypeName::from_code(code).ok_or_else(|| self.malformed(format!("unknown type {code}")))?;
            if head == TypeName::List {
                lists += 1;
                if lists > crate::program::MAX_TERM_DEPTH {
                    return Err(self.malformed("a type nested too deeply"));
                }
                continue;
            }
            return Ok(Type::nested(Type::of_head(head), lists));
        }
    }
    fn code<T>(&mut self, what: &str, from: impl Fn(u8) -> Option<T>) -> Result<T, ArtifactError> {
        let c = self.u8()?;
        from(c).ok_or_else(|| self.malformed(format!("unknown {what} {c}")))
    }
    fn template(&mut self) -> Result<Option<Vec<Piece>>, ArtifactError> {
        if !self.flag()? {
            return Ok(None);
        }
        let n = self.count(2)?;
        let mut pieces = Vec::with_capacity(n);
        for _ in 0..n {
            pieces.push(match self.u8()? {
                0 => Piece::Text(self.str()?),
                1 => {
                    let arg = self.arg()?;
                    let d = self.u8()?;
                    Piece::Term { arg, decimals: (d != 0xff).then_some(d) }
                }
                t => return Err(self.malformed(format!("bad template piece {t}"))),
            });
        }
        Ok(Some(pieces))
    }
    fn term(&mut self) -> Result<TermCode, ArtifactError> {
        Ok(match self.u8()? {
            1 => TermCode::Arith { op: self.code("operator", Arith::from_code)?, lhs: self.arg()?, rhs: self.arg()? },
            2 => TermCode::Func { func: self.code("function", Func::from_code)?, arg: self.arg()? },
            3 => TermCode::Now { field: self.code("time field", NowField::from_code)? },
            4 => TermCode::State {
                series: self.u32()?,
                window: self.code("window", Window::from_code)?,
                seconds: self.u32()?,
            },
            5 => {
                let ext = self.u32()?;
                let n = self.count(5)?;
                let args = (0..n).map(|_| self.arg()).collect::<Result<Vec<_>, _>>()?;
                TermCode::Extern { ext, args }
            }
            t => return Err(self.malformed(format!("bad term tag {t}"))),
        })
    }
    fn instant(&mut self) -> Result<Option<Instant>, ArtifactError> {
        if !self.flag()? {
            return Ok(None);
        }
        Ok(Some(Instant { text: self.str()?, nanos: self.i128()? }))
    }
}

/// Reads and checks an artifact: header, checksum, body, then the verifier.
pub fn read(bytes: &[u8]) -> Result<Program, ArtifactError> {
    let mut r = Reader { bytes, pos: 0, base: 0 };
    if r.take(8).ok() != Some(&MAGIC[..]) {
        return Err(ArtifactError::NotAnArtifact);
    }
    let format = r.u32()?;
    let tl = r.take(2)?;
    let tl = u16::from_le_bytes([tl.first().copied().unwrap_or(0), tl.get(1).copied().unwrap_or(0)]) as usize;
    let toolchain = String::from_utf8_lossy(r.take(tl)?).into_owned();
    if format != FORMAT_VERSION {
        return Err(ArtifactError::WrongFormat { found: format, toolchain });
    }
    let len_bytes = r.take(8)?;
    let body_len = u64::from_le_bytes(len_bytes.try_into().map_err(|_| r.malformed("length"))?);
    let body_start = r.pos;
    let body_len = usize::try_from(body_len).map_err(|_| ArtifactError::Truncated { at: body_start })?;
    let body_end = body_start.checked_add(body_len).ok_or(ArtifactError::Truncated { at: body_start })?;
    let expected_len = body_end.checked_add(32).ok_or(ArtifactError::Truncated { at: body_end })?;
    if bytes.len() < expected_len {
        return Err(ArtifactError::Truncated { at: bytes.len() });
    }
    if bytes.len() > expected_len {
        return Err(ArtifactError::Malformed { at: expected_len, what: "trailing bytes after the checksum".into() });
    }
    let (content, checksum) = bytes.split_at(body_end);
    let digest = Sha256::digest(content);
    // Not a secret: a plain comparison is fine for an integrity check.
    if digest.as_slice() != checksum {
        return Err(ArtifactError::ChecksumMismatch);
    }
    let body = bytes.get(body_start..body_end).ok_or(ArtifactError::Truncated { at: body_start })?;
    let mut b = Reader { bytes: body, pos: 0, base: body_start };
    let program = read_body(&mut b)?;
    if b.pos != body.len() {
        return Err(b.malformed("unread bytes at the end of the body"));
    }
    program.verify().map_err(ArtifactError::Invalid)?;
    Ok(program)
}

fn read_body(r: &mut Reader<'_>) -> Result<Program, ArtifactError> {
    let bundle_id = r.str()?;
    let version = r.str()?;
    let fingerprint = r.str()?;
    let effects = r.strs()?;
    let combine_first = r.flag()?;
    let effective_from = r.instant()?;
    let effective_until = r.instant()?;
    let card_scope = if r.flag()? {
        Some(CardScope { vendor_id: r.str()?, allowed_actions: r.strs()?, condition_ids: r.strs()? })
    } else {
        None
    };
    let n = r.count(4)?;
    let paths = (0..n).map(|_| r.strs()).collect::<Result<Vec<_>, _>>()?;
    let path_texts = r.strs()?;
    let n = r.count(4)?;
    let consts = (0..n).map(|_| r.json()).collect::<Result<Vec<_>, _>>()?;
    let n = r.count(11)?;
    let mut atoms = Vec::with_capacity(n);
    for _ in 0..n {
        let op = r.u8()?;
        let op = AtomOp::from_code(op).ok_or_else(|| r.malformed(format!("unknown atom kind {op}")))?;
        atoms.push(AtomDef { op, lhs: r.arg()?, rhs: r.arg()? });
    }
    let n = r.count(20)?;
    let mut sites = Vec::with_capacity(n);
    for _ in 0..n {
        let text = r.str()?;
        sites.push(Site { text, span: [r.u32()?, r.u32()?], line: r.u32()?, column: r.u32()? });
    }
    let code = r.u32s()?;
    let n = r.count(8)?;
    let mut defs = Vec::with_capacity(n);
    for _ in 0..n {
        defs.push(DefCode { name: r.str()?, entry: r.u32()? });
    }
    let n = r.count(8)?;
    let mut policies = Vec::with_capacity(n);
    for _ in 0..n {
        let id = r.str()?;
        let default = r.opt_u32()?;
        let default_reason = r.str()?;
        let nr = r.count(16)?;
        let mut rules = Vec::with_capacity(nr);
        for _ in 0..nr {
            let id = r.str()?;
            let effect = r.u32()?;
            let entry = r.u32()?;
            let reason = r.str()?;
            let codes = r.strs()?;
            let obligations = match r.json()? {
                Value::Object(m) => m,
                _ => return Err(r.malformed("obligations are not an object")),
            };
            let template = r.template()?;
            rules.push(RuleCode { id, effect, entry, reason, template, codes, obligations });
        }
        let order = r.u32s()?;
        let dispatch = if r.flag()? {
            let path = r.u32()?;
            let nk = r.count(8)?;
            let mut keys = Vec::with_capacity(nk);
            for _ in 0..nk {
                keys.push((r.str()?, r.u32s()?));
            }
            Some(Dispatch { path, keys, other: r.u32s()? })
        } else {
            None
        };
        policies.push(PolicyCode { id, default, default_reason, rules, order, dispatch });
    }
    let n = r.count(2)?;
    let terms = (0..n).map(|_| r.term()).collect::<Result<Vec<_>, _>>()?;
    let term_texts = r.strs()?;
    let n = r.count(9)?;
    let mut externs = Vec::with_capacity(n);
    for _ in 0..n {
        let name = r.str()?;
        let np = r.count(1)?;
        let params = (0..np).map(|_| r.ty()).collect::<Result<Vec<_>, _>>()?;
        externs.push(ExternCode { name, params, returns: r.ty()? });
    }
    let n = r.count(18)?;
    let mut series = Vec::with_capacity(n);
    for _ in 0..n {
        series.push(SeriesCode { name: r.str()?, add: r.arg()?, key: r.u32s()?, on: r.u32s()?, hold: r.flag()? });
    }
    let timezone = r.str()?;
    let hold_ttl = r.u64()?;
    let n = r.count(5)?;
    let mut schema = Vec::with_capacity(n);
    for _ in 0..n {
        schema.push((r.u32()?, r.ty()?));
    }
    let required = r.u32s()?;
    Ok(Program {
        terms,
        term_texts,
        externs,
        series,
        timezone,
        hold_ttl,
        schema,
        required,
        bundle_id,
        version,
        fingerprint,
        effects,
        combine_first,
        effective_from,
        effective_until,
        card_scope,
        paths,
        path_texts,
        consts,
        atoms,
        sites,
        code,
        defs,
        policies,
    })
}

/// The program as text, for snapshot tests and `verdict compile --emit asm`.
pub fn disassemble(p: &Program) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "bundle {:?} version {:?}", p.bundle_id, p.version);
    let _ = writeln!(out, "effects {:?} combine {}", p.effects, if p.combine_first { "first" } else { "overrides" });
    for (i, t) in p.path_texts.iter().enumerate() {
        let _ = writeln!(out, "path p{i} = {t}");
    }
    for (i, c) in p.consts.iter().enumerate() {
        let _ = writeln!(out, "const c{i} = {c}");
    }
    let arg = |a: Arg| match a {
        Arg::Path(x) => format!("p{x}"),
        Arg::Const(x) => format!("c{x}"),
        Arg::Term(x) => format!("t{x}"),
        Arg::None => "-".into(),
    };
    for (i, t) in p.term_texts.iter().enumerate() {
        let _ = writeln!(out, "term t{i} = {t}");
    }
    for (i, a) in p.atoms.iter().enumerate() {
        let _ = writeln!(out, "atom a{i} = {} {} {}", a.op.yaml_kind(), arg(a.lhs), arg(a.rhs));
    }
    for (i, d) in p.defs.iter().enumerate() {
        let _ = writeln!(out, "def d{i} {:?} @{}", d.name, d.entry);
    }
    for pol in &p.policies {
        let default = pol.default.and_then(|d| p.effects.get(d as usize)).map_or("none", String::as_str);
        let _ = writeln!(out, "policy {:?} default {default} order {:?}", pol.id, pol.order);
        for r in &pol.rules {
            let effect = p.effects.get(r.effect as usize).map_or("?", String::as_str);
            let _ = writeln!(out, "  rule {:?} {effect} @{}", r.id, r.entry);
        }
        if let Some(d) = &pol.dispatch {
            let path = p.path_texts.get(d.path as usize).map_or("?", String::as_str);
            let _ = writeln!(out, "  dispatch on {path}:");
            for (k, list) in &d.keys {
                let _ = writeln!(out, "    {k:?} -> {list:?}");
            }
            let _ = writeln!(out, "    other -> {:?}", d.other);
        }
    }
    let _ = writeln!(out, "code:");
    match crate::bytecode::decode_all(&p.code) {
        Ok(ops) => {
            for (pc, op) in ops {
                let operands: Vec<String> = op
                    .operands()
                    .into_iter()
                    .map(|(name, o)| {
                        let v = match o {
                            crate::bytecode::Operand::atom(x) => format!("a{x}"),
                            crate::bytecode::Operand::site(x) => {
                                format!("{:?}", p.sites.get(x as usize).map_or("?", |s| s.text.as_str()))
                            }
                            crate::bytecode::Operand::target(x) => format!("@{x}"),
                            crate::bytecode::Operand::def(x) => format!("d{x}"),
                        };
                        format!("{name}={v}")
                    })
                    .collect();
                let _ = writeln!(out, "  {pc:>5}: {} {}", op.name(), operands.join(" "));
            }
        }
        Err(pc) => {
            let _ = writeln!(out, "  <undecodable at {pc}>");
        }
    }
    out
}

/// Reads an artifact under a set of trusted keys: the signature envelope first (see
/// [`crate::signature`]: with keys, an artifact loads only when one of them signed it and the
/// signature verifies, checked before the artifact is decoded), then [`read`].
pub fn read_trusted(
    bytes: &[u8],
    keys: &crate::signature::TrustedKeys,
) -> Result<crate::signature::Trusted, crate::signature::TrustError> {
    let (artifact, signer) = crate::signature::check(bytes, keys)?;
    let program = read(artifact)?;
    Ok(crate::signature::Trusted { program, signer, digest: crate::signature::digest(bytes) })
}
