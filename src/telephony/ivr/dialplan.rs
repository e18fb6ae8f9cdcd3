//! Dialplan files: the IVR's flows as data (`dialplan/*.toml`), loaded and validated.
//!
//! Loading is all-or-nothing: every file is parsed, every step checked, and either a complete
//! [`Dialplan`] comes back or every problem found, each as `file:line: message`. A loaded dialplan
//! is immutable; reloading builds a new one (the caller swaps an `Arc`, and calls in progress keep
//! the one they started with). The format is described in `docs/dialplan.md`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;

use super::super::prompts::{Language, PromptLibrary, PromptRef};
use super::action::{ActionKind, COMMON_OUTCOMES, DeclineReason, InputKind};
use super::interp::INTERPRETER_PROMPTS;

/// The most files a dialplan folder may hold.
pub const FILES_MAX: usize = 64;
/// The largest dialplan file accepted.
pub const FILE_BYTES_MAX: usize = 1 << 20;
/// The most flows, and the most steps in one flow.
pub const FLOWS_MAX: usize = 256;
pub const STEPS_PER_FLOW_MAX: usize = 1000;
/// Loading stops collecting problems after this many.
pub const DIAGNOSTICS_MAX: usize = 100;
/// Longest collect the dialplan may ask for.
pub const DIGITS_MAX: u8 = 32;

/// Variables that actions set; a collect may not use these names.
pub const ACTION_VARIABLES: [&str; 8] = [
    "merchant",
    "amount",
    "reason",
    "question",
    "tries_left",
    "reference",
    "purchases",
    "voice_digits",
];

/// Where a step is: which flow, which step in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StepAddr {
    pub(super) flow: usize,
    pub(super) step: usize,
}

/// One problem found while loading, at `file:line`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

/// Why a dialplan did not load.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DialplanError {
    /// A file or folder could not be read.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The folder holds no `*.toml` file, or more than [`FILES_MAX`].
    #[error("{path}: a dialplan folder needs 1 to {FILES_MAX} .toml files, found {count}")]
    FileCount { path: PathBuf, count: usize },
    /// A file is larger than [`FILE_BYTES_MAX`].
    #[error("{path}: {bytes} bytes, more than the {FILE_BYTES_MAX} allowed")]
    TooLarge { path: PathBuf, bytes: u64 },
    /// The files parse but do not make a valid dialplan, or do not parse; one line per problem.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Diagnostic>),
}

impl DialplanError {
    /// The problems found, when the error is about the content.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            DialplanError::Invalid(d) => d,
            _ => &[],
        }
    }
}

/// `[settings]`: limits and the error flow.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The language spoken; must be the prompt library's.
    pub language: Language,
    /// The longest call; at this age the IVR hangs up.
    pub call_duration_max_ms: u64,
    /// How many digits the caller may key ahead.
    pub type_ahead_max: usize,
}

/// How a collect listens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CollectMode {
    /// Keyed digits only.
    Dtmf,
    /// Spoken digits only, through the speech collector.
    Speech,
    /// Whichever comes first; a keyed digit stops listening.
    Both,
}

/// Check digit schemes a collect can verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckDigit {
    Damm,
}

/// One item of a prompt list: a recorded prompt, or a variable spoken as its value.
#[derive(Clone, Debug)]
pub(super) enum PlayItem {
    Prompt(PromptRef),
    Var(String),
}

#[derive(Debug)]
pub(super) struct PlayStep {
    pub items: Vec<PlayItem>,
    pub barge_in: bool,
    pub flush: bool,
}

#[derive(Debug)]
pub(super) struct CollectStep<T> {
    pub var: String,
    pub prompts: Vec<PlayItem>,
    pub invalid_prompts: Vec<PlayItem>,
    pub no_input_prompts: Vec<PlayItem>,
    pub digits_min: u8,
    pub digits_max: u8,
    pub terminator: Option<char>,
    pub first_digit_timeout_ms: u64,
    pub inter_digit_timeout_ms: u64,
    pub speech_timeout_ms: u64,
    pub speech_confidence_min: f32,
    pub attempts: u8,
    pub valid: Vec<String>,
    pub check: Option<CheckDigit>,
    pub secret: bool,
    /// Keep the spoken answer's audio (for `voice_verify`, `voice_enrol`) instead of digits.
    pub audio: bool,
    pub mode: CollectMode,
    pub barge_in: bool,
    pub flush: bool,
    pub on_failure: T,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum BranchOn {
    Outcome,
    Var(String),
}

#[derive(Debug)]
pub(super) struct BranchStep<T> {
    pub on: BranchOn,
    pub cases: Vec<(String, T)>,
    pub default: Option<T>,
}

#[derive(Debug)]
pub(super) struct ActionStep {
    pub kind: ActionKind,
    pub input: Option<String>,
    pub hold: Vec<PlayItem>,
    pub timeout_ms: u64,
}

#[derive(Debug)]
pub(super) enum StepKind<T> {
    Play(PlayStep),
    Collect(Box<CollectStep<T>>),
    Branch(BranchStep<T>),
    Goto(T),
    Hangup,
    Action(ActionStep),
}

#[derive(Debug)]
pub(super) struct Step<T = StepAddr> {
    pub file: usize,
    pub line: usize,
    pub label: Option<String>,
    pub kind: StepKind<T>,
}

#[derive(Debug)]
pub(super) struct Flow<T = StepAddr> {
    pub name: String,
    pub steps: Vec<Step<T>>,
}

/// A loaded, validated dialplan. Immutable; share it by `Arc`.
#[derive(Debug)]
pub struct Dialplan {
    prompts: Arc<PromptLibrary>,
    files: Vec<PathBuf>,
    pub(super) flows: Vec<Flow>,
    entries: BTreeMap<String, StepAddr>,
    default_entry: StepAddr,
    pub(super) on_error: StepAddr,
    pub(super) settings: Settings,
}

impl Dialplan {
    /// Loads every `*.toml` file of `dir` (sorted by name) against a prompt library.
    pub fn load_dir(dir: &Path, prompts: Arc<PromptLibrary>) -> Result<Dialplan, DialplanError> {
        let io = |source| DialplanError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            if path.extension().and_then(|e| e.to_str()) == Some("toml") {
                paths.push(path);
                if paths.len() > FILES_MAX {
                    break;
                }
            }
        }
        if paths.is_empty() || paths.len() > FILES_MAX {
            return Err(DialplanError::FileCount {
                path: dir.to_path_buf(),
                count: paths.len(),
            });
        }
        paths.sort();
        let mut sources = Vec::with_capacity(paths.len());
        for path in paths {
            let bytes = std::fs::metadata(&path)
                .map_err(|source| DialplanError::Io {
                    path: path.clone(),
                    source,
                })?
                .len();
            if bytes > FILE_BYTES_MAX as u64 {
                return Err(DialplanError::TooLarge { path, bytes });
            }
            let text = std::fs::read_to_string(&path).map_err(|source| DialplanError::Io {
                path: path.clone(),
                source,
            })?;
            sources.push((path, text));
        }
        Dialplan::from_sources(sources, prompts)
    }

    /// Loads a dialplan from `(file name, text)` pairs; the names appear in diagnostics.
    pub fn from_sources(
        sources: Vec<(PathBuf, String)>,
        prompts: Arc<PromptLibrary>,
    ) -> Result<Dialplan, DialplanError> {
        Loader::new(prompts).load(sources)
    }

    /// The flow a call to `called_user` starts in (`[entry]`, else its `"*"`).
    pub fn entry_for(&self, called_user: &str) -> StepAddr {
        self.entries
            .get(called_user)
            .copied()
            .unwrap_or(self.default_entry)
    }

    /// The prompt library the dialplan was checked against.
    pub fn prompts(&self) -> &Arc<PromptLibrary> {
        &self.prompts
    }

    /// `[settings]` with defaults filled in.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Flow names.
    pub fn flow_names(&self) -> impl Iterator<Item = &str> {
        self.flows.iter().map(|f| f.name.as_str())
    }

    pub(super) fn step(&self, at: StepAddr) -> Option<&Step> {
        self.flows.get(at.flow)?.steps.get(at.step)
    }

    /// `flow:step (file:line)` for log lines.
    pub fn describe(&self, at: StepAddr) -> String {
        match (self.flows.get(at.flow), self.step(at)) {
            (Some(flow), Some(step)) => format!(
                "{}#{} ({}:{})",
                flow.name,
                at.step + 1,
                self.files
                    .get(step.file)
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                step.line
            ),
            _ => format!("{at:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Raw TOML shapes. Keys and values keep their byte spans so every problem gets a line.

type RawTable = BTreeMap<Spanned<String>, Spanned<toml::Value>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    settings: Option<Spanned<RawTable>>,
    entry: Option<Spanned<BTreeMap<Spanned<String>, Spanned<String>>>>,
    #[serde(default)]
    flow: BTreeMap<Spanned<String>, Vec<Spanned<RawTable>>>,
}

/// A target as written (`label`, `flow:label`), with where it was written.
#[derive(Debug, Clone)]
pub(super) struct RawTarget {
    text: String,
    line: usize,
}

struct Field {
    key: String,
    key_line: usize,
    value: toml::Value,
    line: usize,
}

/// Line numbers of one file.
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> LineIndex {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }

    /// 1-based line of a byte offset.
    fn line(&self, offset: usize) -> usize {
        self.starts.partition_point(|&s| s <= offset).max(1)
    }

    fn column(&self, offset: usize) -> usize {
        let line = self.line(offset);
        offset - self.starts[line - 1] + 1
    }
}

const STEP_KINDS: [&str; 6] = ["play", "collect", "branch", "goto", "hangup", "action"];

fn fields_of(kind: &str) -> &'static [&'static str] {
    match kind {
        "play" => &["play", "barge_in", "flush"],
        "collect" => &[
            "collect",
            "prompts",
            "invalid_prompts",
            "no_input_prompts",
            "digits_min",
            "digits_max",
            "terminator",
            "first_digit_timeout_ms",
            "inter_digit_timeout_ms",
            "speech_timeout_ms",
            "speech_confidence_min",
            "attempts",
            "valid",
            "check",
            "secret",
            "audio",
            "mode",
            "barge_in",
            "flush",
            "on_failure",
        ],
        "branch" => &["branch", "cases", "default"],
        "goto" => &["goto"],
        "hangup" => &["hangup"],
        "action" => &["action", "input", "hold_prompts", "timeout_ms"],
        _ => &[],
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z' | '_'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
        && s.len() <= 64
}

fn type_name(v: &toml::Value) -> &'static str {
    match v {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a float",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a date",
        toml::Value::Array(_) => "a list",
        toml::Value::Table(_) => "a table",
    }
}

/// A step table's fields, taken one by one; what is left at the end was not allowed.
struct Fields {
    fields: Vec<Field>,
    file: usize,
    diags: Vec<(usize, String)>,
}

impl Fields {
    fn new(lines: &LineIndex, table: RawTable, file: usize) -> Fields {
        let fields = table
            .into_iter()
            .map(|(k, v)| Field {
                key_line: lines.line(k.span().start),
                key: k.into_inner(),
                line: lines.line(v.span().start),
                value: v.into_inner(),
            })
            .collect();
        Fields {
            fields,
            file,
            diags: Vec::new(),
        }
    }

    /// Moves the problems found into the loader's list.
    fn finish(&mut self, diags: &mut Diags) {
        for (line, message) in self.diags.drain(..) {
            diags.push(self.file, line, message);
        }
    }

    fn take(&mut self, key: &str) -> Option<Field> {
        let i = self.fields.iter().position(|f| f.key == key)?;
        Some(self.fields.remove(i))
    }

    fn err(&mut self, line: usize, message: String) {
        self.diags.push((line, message));
    }

    fn string(&mut self, key: &str) -> Option<(String, usize)> {
        let f = self.take(key)?;
        match f.value {
            toml::Value::String(s) => Some((s, f.line)),
            other => {
                let t = type_name(&other);
                self.err(f.line, format!("`{key}` must be a string, not {t}"));
                None
            }
        }
    }

    fn boolean(&mut self, key: &str, default: bool) -> bool {
        let Some(f) = self.take(key) else {
            return default;
        };
        match f.value {
            toml::Value::Boolean(b) => b,
            other => {
                let t = type_name(&other);
                self.err(f.line, format!("`{key}` must be true or false, not {t}"));
                default
            }
        }
    }

    fn int(&mut self, key: &str, range: RangeInclusive<i64>, default: i64) -> (i64, usize) {
        let Some(f) = self.take(key) else {
            return (default, 0);
        };
        match f.value {
            toml::Value::Integer(n) if range.contains(&n) => (n, f.line),
            toml::Value::Integer(n) => {
                self.err(
                    f.line,
                    format!(
                        "`{key}` = {n} is out of range {}..={}",
                        range.start(),
                        range.end()
                    ),
                );
                (default, f.line)
            }
            other => {
                let t = type_name(&other);
                self.err(f.line, format!("`{key}` must be an integer, not {t}"));
                (default, f.line)
            }
        }
    }

    fn float(&mut self, key: &str, range: RangeInclusive<f64>, default: f64) -> f64 {
        let Some(f) = self.take(key) else {
            return default;
        };
        let value = match f.value {
            toml::Value::Float(x) => x,
            toml::Value::Integer(n) => n as f64,
            other => {
                let t = type_name(&other);
                self.err(f.line, format!("`{key}` must be a number, not {t}"));
                return default;
            }
        };
        if range.contains(&value) {
            value
        } else {
            self.err(
                f.line,
                format!(
                    "`{key}` = {value} is out of range {}..={}",
                    range.start(),
                    range.end()
                ),
            );
            default
        }
    }

    fn string_list(&mut self, key: &str) -> Option<(Vec<String>, usize)> {
        let f = self.take(key)?;
        let toml::Value::Array(items) = f.value else {
            let t = type_name(&f.value);
            self.err(
                f.line,
                format!("`{key}` must be a list of strings, not {t}"),
            );
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            match item {
                toml::Value::String(s) => out.push(s),
                other => {
                    let t = type_name(&other);
                    self.err(f.line, format!("`{key}` must hold strings, not {t}"));
                    return None;
                }
            }
        }
        Some((out, f.line))
    }
}

/// Collected problems, capped at [`DIAGNOSTICS_MAX`].
#[derive(Default)]
struct Diags {
    list: Vec<(usize, usize, String)>,
}

impl Diags {
    fn push(&mut self, file: usize, line: usize, message: String) {
        if self.list.len() < DIAGNOSTICS_MAX {
            self.list.push((file, line, message));
        }
    }
}

/// How a collect variable was declared, for checking its uses.
#[derive(Debug, Clone)]
struct VarDecl {
    secret: bool,
    audio: bool,
    valid: Vec<String>,
    file: usize,
    line: usize,
}

/// A variable use to check once every declaration is known.
#[derive(Debug)]
enum VarUse {
    Play,
    Branch,
    Input(InputKind),
}

/// A `[settings]` or `[entry]` value to resolve once every flow is known.
struct PendingEntry {
    user: String,
    target: RawTarget,
    file: usize,
}

struct Loader {
    prompts: Arc<PromptLibrary>,
    diags: Diags,
    files: Vec<PathBuf>,
    flows: Vec<(Flow<RawTarget>, usize, usize)>,
    vars: BTreeMap<String, VarDecl>,
    var_uses: Vec<(String, VarUse, usize, usize)>,
    entries: Vec<PendingEntry>,
    entry_file: Option<(usize, usize)>,
    on_error: Option<(RawTarget, usize)>,
    settings: Settings,
    settings_file: Option<(usize, usize)>,
    syntax_failed: bool,
}

impl Loader {
    fn new(prompts: Arc<PromptLibrary>) -> Loader {
        let language = prompts.language();
        Loader {
            prompts,
            diags: Diags::default(),
            files: Vec::new(),
            flows: Vec::new(),
            vars: BTreeMap::new(),
            var_uses: Vec::new(),
            entries: Vec::new(),
            entry_file: None,
            on_error: None,
            settings: Settings {
                language,
                call_duration_max_ms: 900_000,
                type_ahead_max: 32,
            },
            settings_file: None,
            syntax_failed: false,
        }
    }

    fn load(mut self, sources: Vec<(PathBuf, String)>) -> Result<Dialplan, DialplanError> {
        for (path, text) in sources {
            let file = self.files.len();
            self.files.push(path);
            self.parse_file(file, &text);
        }
        // A file that does not parse hides its entries and flows: checking the rest would only
        // report their absence.
        let plan = if self.syntax_failed {
            None
        } else {
            self.link()
        };
        match plan {
            Some(plan) if self.diags.list.is_empty() => Ok(plan),
            _ => {
                let files = self.files;
                let mut list: Vec<Diagnostic> = self
                    .diags
                    .list
                    .into_iter()
                    .map(|(file, line, message)| Diagnostic {
                        file: files.get(file).cloned().unwrap_or_default(),
                        line,
                        message,
                    })
                    .collect();
                list.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
                list.dedup();
                if list.is_empty() {
                    list.push(Diagnostic {
                        file: files.first().cloned().unwrap_or_default(),
                        line: 1,
                        message: "the dialplan is incomplete".into(),
                    });
                }
                Err(DialplanError::Invalid(list))
            }
        }
    }

    // -- phase 1: each file on its own ------------------------------------------------------

    fn parse_file(&mut self, file: usize, text: &str) {
        let lines = LineIndex::new(text);
        let raw: RawFile = match toml::from_str(text) {
            Ok(raw) => raw,
            Err(e) => {
                // An error at the very end (an unclosed list) points past the last newline;
                // report it on the last line, as the parser's own message does.
                let end = if text.ends_with('\n') {
                    text.len().saturating_sub(1)
                } else {
                    text.len()
                };
                let offset = e.span().map(|s| s.start).unwrap_or(0).min(end);
                let message = format!(
                    "{} (column {})",
                    e.message().trim_end(),
                    lines.column(offset)
                );
                self.diags.push(file, lines.line(offset), message);
                self.syntax_failed = true;
                return;
            }
        };
        if let Some(settings) = raw.settings {
            self.parse_settings(file, &lines, settings);
        }
        if let Some(entry) = raw.entry {
            let line = lines.line(entry.span().start);
            if let Some((f, l)) = self.entry_file {
                let other = self.files[f].display().to_string();
                self.diags.push(
                    file,
                    line,
                    format!("[entry] is already given at {other}:{l}"),
                );
            } else {
                self.entry_file = Some((file, line));
            }
            for (user, target) in entry.into_inner() {
                self.entries.push(PendingEntry {
                    user: user.get_ref().clone(),
                    target: RawTarget {
                        text: target.get_ref().clone(),
                        line: lines.line(target.span().start),
                    },
                    file,
                });
            }
        }
        for (name, steps) in raw.flow {
            let line = lines.line(name.span().start);
            let name = name.into_inner();
            if !is_identifier(&name) {
                self.diags.push(
                    file,
                    line,
                    format!("flow name `{name}` must be lower case letters, digits and _"),
                );
            }
            if self.flows.len() >= FLOWS_MAX {
                self.diags
                    .push(file, line, format!("more than {FLOWS_MAX} flows"));
                return;
            }
            if steps.len() > STEPS_PER_FLOW_MAX {
                self.diags.push(
                    file,
                    line,
                    format!("flow `{name}` has more than {STEPS_PER_FLOW_MAX} steps"),
                );
                continue;
            }
            if steps.is_empty() {
                self.diags
                    .push(file, line, format!("flow `{name}` has no steps"));
                continue;
            }
            let mut parsed = Vec::with_capacity(steps.len());
            for table in steps {
                if let Some(step) = self.parse_step(file, &lines, table) {
                    parsed.push(step);
                }
            }
            self.flows.push((
                Flow {
                    name,
                    steps: parsed,
                },
                file,
                line,
            ));
        }
    }

    fn parse_settings(&mut self, file: usize, lines: &LineIndex, table: Spanned<RawTable>) {
        let line = lines.line(table.span().start);
        if let Some((f, l)) = self.settings_file {
            let other = self.files[f].display().to_string();
            self.diags.push(
                file,
                line,
                format!("[settings] is already given at {other}:{l}"),
            );
            return;
        }
        self.settings_file = Some((file, line));
        let library_language = self.prompts.language();
        let mut f = Fields::new(lines, table.into_inner(), file);
        if let Some((code, l)) = f.string("language") {
            if Language::from_code(&code) != Some(library_language) {
                f.err(
                    l,
                    format!(
                        "language `{code}` does not match the prompts' language `{}`",
                        library_language.code()
                    ),
                );
            }
        }
        let (call_ms, _) = f.int("call_duration_max_ms", 10_000..=3_600_000, 900_000);
        let (type_ahead, _) = f.int("type_ahead_max", 1..=64, 32);
        let on_error = f
            .string("on_error")
            .map(|(text, line)| RawTarget { text, line });
        let rest: Vec<(String, usize)> = f.fields.drain(..).map(|x| (x.key, x.key_line)).collect();
        f.finish(&mut self.diags);
        for (key, l) in rest {
            self.diags
                .push(file, l, format!("unknown field `{key}` in [settings]"));
        }
        self.settings.call_duration_max_ms = call_ms as u64;
        self.settings.type_ahead_max = type_ahead as usize;
        match on_error {
            Some(t) => self.on_error = Some((t, file)),
            None => self.diags.push(
                file,
                line,
                "[settings] needs `on_error`, the flow for unexpected outcomes".into(),
            ),
        }
    }

    fn play_items(
        &mut self,
        file: usize,
        line: usize,
        names: Vec<String>,
        uses: bool,
    ) -> Vec<PlayItem> {
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            if let Some(var) = name.strip_prefix("${").and_then(|v| v.strip_suffix('}')) {
                if uses {
                    self.var_uses
                        .push((var.to_string(), VarUse::Play, file, line));
                }
                out.push(PlayItem::Var(var.to_string()));
            } else if let Some(p) = self.prompts.get(&name) {
                out.push(PlayItem::Prompt(p.clone()));
            } else {
                let lang = self.prompts.language().code();
                self.diags.push(
                    file,
                    line,
                    format!("unknown prompt `{name}` (no prompts/{lang}/{name}.wav)"),
                );
            }
        }
        out
    }

    fn parse_step(
        &mut self,
        file: usize,
        lines: &LineIndex,
        table: Spanned<RawTable>,
    ) -> Option<Step<RawTarget>> {
        let table_line = lines.line(table.span().start);
        let mut f = Fields::new(lines, table.into_inner(), file);
        let kinds: Vec<(String, usize)> = f
            .fields
            .iter()
            .filter(|x| STEP_KINDS.contains(&x.key.as_str()))
            .map(|x| (x.key.clone(), x.key_line))
            .collect();
        let (kind, line) = match kinds.as_slice() {
            [one] => one.clone(),
            [] => {
                let all_fields: BTreeSet<&str> = STEP_KINDS
                    .iter()
                    .flat_map(|k| fields_of(k))
                    .copied()
                    .collect();
                let unknown = f
                    .fields
                    .iter()
                    .find(|x| x.key != "label" && !all_fields.contains(x.key.as_str()))
                    .map(|x| (x.key.clone(), x.key_line));
                match unknown {
                    Some((key, l)) => self.diags.push(
                        file,
                        l,
                        format!(
                            "unknown step kind `{key}` (a step is one of: {})",
                            STEP_KINDS.join(", ")
                        ),
                    ),
                    None => self.diags.push(
                        file,
                        table_line,
                        format!("step has no kind (one of: {})", STEP_KINDS.join(", ")),
                    ),
                }
                return None;
            }
            [first, second, ..] => {
                self.diags.push(
                    file,
                    second.1,
                    format!(
                        "step has two kinds, `{}` and `{}`; split it into two steps",
                        first.0, second.0
                    ),
                );
                return None;
            }
        };
        let label = match f.string("label") {
            Some((label, l)) if !is_identifier(&label) || label == "start" => {
                f.err(
                    l,
                    format!(
                        "label `{label}` must be lower case letters, digits and _, and not `start`"
                    ),
                );
                None
            }
            other => other.map(|(label, _)| label),
        };
        let parsed = match kind.as_str() {
            "play" => self.parse_play(&mut f, line),
            "collect" => self.parse_collect(&mut f, line),
            "branch" => self.parse_branch(&mut f, line),
            "goto" => f
                .string("goto")
                .map(|(text, line)| StepKind::Goto(RawTarget { text, line })),
            "hangup" => {
                if f.boolean("hangup", true) {
                    Some(StepKind::Hangup)
                } else {
                    f.err(line, "`hangup` must be true".into());
                    None
                }
            }
            _ => self.parse_action(&mut f, line),
        };
        // Whatever was not taken does not belong to this kind of step.
        let rest: Vec<(String, usize)> = f.fields.drain(..).map(|x| (x.key, x.key_line)).collect();
        f.finish(&mut self.diags);
        let all_fields: BTreeSet<&str> = STEP_KINDS
            .iter()
            .flat_map(|k| fields_of(k))
            .copied()
            .collect();
        let ok = rest.is_empty();
        for (key, l) in rest {
            let message = if all_fields.contains(key.as_str()) {
                format!("field `{key}` does not belong in a `{kind}` step")
            } else {
                format!("unknown field `{key}` in a `{kind}` step")
            };
            self.diags.push(file, l, message);
        }
        let kind = parsed?;
        ok.then_some(Step {
            file,
            line,
            label,
            kind,
        })
    }

    fn parse_play(&mut self, f: &mut Fields, line: usize) -> Option<StepKind<RawTarget>> {
        let (names, l) = f.string_list("play")?;
        let barge_in = f.boolean("barge_in", true);
        let flush = f.boolean("flush", false);
        if names.is_empty() {
            f.err(l, "`play` needs at least one prompt".into());
            return None;
        }
        let file = f.file;
        let items = self.play_items(file, l.max(line), names, true);
        Some(StepKind::Play(PlayStep {
            items,
            barge_in,
            flush,
        }))
    }

    fn parse_collect(&mut self, f: &mut Fields, line: usize) -> Option<StepKind<RawTarget>> {
        let file = f.file;
        let (var, var_line) = f.string("collect")?;
        if !is_identifier(&var) || var == "outcome" || ACTION_VARIABLES.contains(&var.as_str()) {
            f.err(
                var_line,
                format!(
                    "collect variable `{var}` must be lower case letters, digits and _, and not \
                     `outcome` or a variable actions set ({})",
                    ACTION_VARIABLES.join(", ")
                ),
            );
        }
        let max_range = 1..=i64::from(DIGITS_MAX);
        let (digits_min, min_line) = f.int("digits_min", max_range.clone(), 1);
        let (digits_max, max_line) = f.int("digits_max", max_range, -1);
        if max_line == 0 {
            f.err(line, "collect needs `digits_max`".into());
        }
        if digits_max >= 0 && digits_min > digits_max {
            f.err(
                min_line.max(max_line),
                format!("digits_min {digits_min} is more than digits_max {digits_max}"),
            );
        }
        let terminator = match f.string("terminator") {
            None => Some('#'),
            Some((t, l)) => match t.as_str() {
                "" => None,
                "#" => Some('#'),
                "*" => Some('*'),
                _ => {
                    f.err(l, format!("terminator `{t}` must be \"#\", \"*\" or \"\""));
                    None
                }
            },
        };
        let (first_ms, _) = f.int("first_digit_timeout_ms", 500..=60_000, 6_000);
        let (inter_ms, _) = f.int("inter_digit_timeout_ms", 500..=30_000, 3_000);
        let (speech_ms, _) = f.int("speech_timeout_ms", 1_000..=60_000, 10_000);
        let confidence = f.float("speech_confidence_min", 0.0..=1.0, 0.5);
        let (attempts, _) = f.int("attempts", 1..=9, 3);
        let valid = match f.string_list("valid") {
            None => Vec::new(),
            Some((list, l)) => {
                for v in &list {
                    let len = v.len() as i64;
                    if !v.bytes().all(|b| b.is_ascii_digit())
                        || len < digits_min
                        || (digits_max >= 0 && len > digits_max)
                    {
                        f.err(
                            l,
                            format!("valid value `{v}` is not {digits_min} to {digits_max} digits"),
                        );
                    }
                }
                list
            }
        };
        let check = match f.string("check") {
            None => None,
            Some((c, l)) if c == "damm" => {
                if digits_min < 2 {
                    f.err(l, "check = \"damm\" needs digits_min of 2 or more".into());
                }
                Some(CheckDigit::Damm)
            }
            Some((c, l)) => {
                f.err(l, format!("unknown check `{c}` (known: damm)"));
                None
            }
        };
        let secret = f.boolean("secret", false);
        let mode = match f.string("mode") {
            None => CollectMode::Dtmf,
            Some((m, l)) => match m.as_str() {
                "dtmf" => CollectMode::Dtmf,
                "speech" => CollectMode::Speech,
                "both" => CollectMode::Both,
                _ => {
                    f.err(
                        l,
                        format!("mode `{m}` must be \"dtmf\", \"speech\" or \"both\""),
                    );
                    CollectMode::Dtmf
                }
            },
        };
        let audio = f.boolean("audio", false);
        if audio && mode != CollectMode::Speech {
            f.err(
                line,
                "audio = true keeps a spoken answer and needs mode = \"speech\"".into(),
            );
        }
        if audio && check.is_some() {
            f.err(line, "audio = true cannot have a check digit".into());
        }
        let barge_in = f.boolean("barge_in", true);
        let flush = f.boolean("flush", false);
        let prompts = f.string_list("prompts");
        let invalid = f.string_list("invalid_prompts");
        let no_input = f.string_list("no_input_prompts");
        let on_failure = f.string("on_failure");
        if on_failure.is_none() {
            f.err(
                line,
                "collect needs `on_failure`, where to go after the last attempt".into(),
            );
        }
        let mut items = |list: Option<(Vec<String>, usize)>| match list {
            Some((names, l)) => self.play_items(file, l, names, true),
            None => Vec::new(),
        };
        let prompts = items(prompts);
        let invalid_prompts = items(invalid);
        let no_input_prompts = match no_input {
            Some(list) => items(Some(list)),
            None => invalid_prompts.clone(),
        };
        match self.vars.get(&var) {
            Some(decl) if decl.audio != audio || decl.secret != secret => {
                let kind = if decl.audio != audio {
                    "audio"
                } else {
                    "secret"
                };
                let other = self.files[decl.file].display().to_string();
                let decl_line = decl.line;
                self.diags.push(
                    file,
                    var_line,
                    format!(
                        "`{var}` is collected as {kind} in one place and not in another \
                         ({other}:{decl_line})"
                    ),
                );
            }
            Some(_) => {}
            None => {
                self.vars.insert(
                    var.clone(),
                    VarDecl {
                        secret,
                        audio,
                        valid: valid.clone(),
                        file,
                        line: var_line,
                    },
                );
            }
        }
        let (on_failure_text, on_failure_line) = on_failure?;
        Some(StepKind::Collect(Box::new(CollectStep {
            var,
            prompts,
            invalid_prompts,
            no_input_prompts,
            digits_min: digits_min as u8,
            digits_max: digits_max.max(1) as u8,
            terminator,
            first_digit_timeout_ms: first_ms as u64,
            inter_digit_timeout_ms: inter_ms as u64,
            speech_timeout_ms: speech_ms as u64,
            speech_confidence_min: confidence as f32,
            attempts: attempts as u8,
            valid,
            check,
            secret,
            audio,
            mode,
            barge_in,
            flush,
            on_failure: RawTarget {
                text: on_failure_text,
                line: on_failure_line,
            },
        })))
    }

    fn parse_branch(&mut self, f: &mut Fields, line: usize) -> Option<StepKind<RawTarget>> {
        let (on, on_line) = f.string("branch")?;
        let on = if on == "outcome" {
            BranchOn::Outcome
        } else {
            self.var_uses
                .push((on.clone(), VarUse::Branch, f.file, on_line));
            BranchOn::Var(on)
        };
        let default = f
            .string("default")
            .map(|(text, line)| RawTarget { text, line });
        let mut cases = Vec::new();
        match f.take("cases") {
            Some(Field {
                value: toml::Value::Table(table),
                line: l,
                ..
            }) => {
                for (key, value) in table {
                    match value {
                        toml::Value::String(text) => cases.push((key, RawTarget { text, line: l })),
                        other => {
                            let t = type_name(&other);
                            f.err(l, format!("case `{key}` must name a target, not {t}"));
                        }
                    }
                }
            }
            Some(other) => {
                let t = type_name(&other.value);
                f.err(other.line, format!("`cases` must be a table, not {t}"));
            }
            None => {}
        }
        if cases.is_empty() && default.is_none() {
            f.err(line, "branch needs `cases` or a `default`".into());
        }
        Some(StepKind::Branch(BranchStep { on, cases, default }))
    }

    fn parse_action(&mut self, f: &mut Fields, line: usize) -> Option<StepKind<RawTarget>> {
        let file = f.file;
        let (name, name_line) = f.string("action")?;
        let Some(kind) = ActionKind::from_name(&name) else {
            let known: Vec<&str> = ActionKind::ALL.iter().map(|k| k.name()).collect();
            f.err(
                name_line,
                format!("unknown action `{name}` (known: {})", known.join(", ")),
            );
            // Take the other fields so they are not reported as misplaced too.
            let _ = (
                f.take("input"),
                f.take("hold_prompts"),
                f.take("timeout_ms"),
            );
            return None;
        };
        let input = f.string("input");
        match (kind.input(), &input) {
            (Some(_), None) => f.err(
                line,
                format!("action `{name}` needs `input`, the variable holding the digits"),
            ),
            (None, Some((_, l))) => f.err(*l, format!("action `{name}` takes no `input`")),
            (Some(k), Some((var, l))) => {
                self.var_uses
                    .push((var.clone(), VarUse::Input(k), file, *l));
            }
            (None, None) => {}
        }
        let default_timeout = kind.default_timeout_ms() as i64;
        let (timeout_ms, _) = f.int("timeout_ms", 100..=3_600_000, default_timeout);
        let hold = f.string_list("hold_prompts");
        let hold = match hold {
            Some((names, l)) => self.play_items(file, l, names, true),
            None => Vec::new(),
        };
        Some(StepKind::Action(ActionStep {
            kind,
            input: input.map(|(v, _)| v),
            hold,
            timeout_ms: timeout_ms as u64,
        }))
    }

    // -- phase 2: the files together --------------------------------------------------------

    fn link(&mut self) -> Option<Dialplan> {
        // The interpreter speaks some prompts on its own: make sure the library has them.
        let language = self.prompts.language();
        let needed: Vec<&str> = INTERPRETER_PROMPTS
            .into_iter()
            .chain(DeclineReason::ALL.iter().map(|r| r.prompt_name()))
            .chain(language.vocabulary())
            .collect();
        for name in needed {
            if !self.prompts.contains(name) {
                self.diags.push(
                    0,
                    1,
                    format!(
                        "the prompt library lacks `{name}` (prompts/{}/{name}.wav), which the IVR speaks",
                        language.code()
                    ),
                );
            }
        }
        // Flow names must be unique across files.
        let mut flow_index: BTreeMap<String, usize> = BTreeMap::new();
        let mut flows_raw = std::mem::take(&mut self.flows);
        for (i, (flow, file, line)) in flows_raw.iter().enumerate() {
            if let Some(&j) = flow_index.get(&flow.name) {
                let (_, other_file, other_line) = &flows_raw[j];
                let other = self.files[*other_file].display().to_string();
                self.diags.push(
                    *file,
                    *line,
                    format!(
                        "flow `{}` is already defined at {other}:{other_line}",
                        flow.name
                    ),
                );
            } else {
                flow_index.insert(flow.name.clone(), i);
            }
        }
        // Labels must be unique within a flow.
        let mut labels: Vec<BTreeMap<String, usize>> = Vec::with_capacity(flows_raw.len());
        for (flow, _, _) in &flows_raw {
            let mut map = BTreeMap::new();
            for (i, step) in flow.steps.iter().enumerate() {
                if let Some(label) = &step.label {
                    if map.insert(label.clone(), i).is_some() {
                        self.diags.push(
                            step.file,
                            step.line,
                            format!("label `{label}` is used twice in flow `{}`", flow.name),
                        );
                    }
                }
            }
            labels.push(map);
        }

        let flow_names: Vec<String> = flows_raw.iter().map(|(f, _, _)| f.name.clone()).collect();
        let resolve = |diags: &mut Diags,
                       file: usize,
                       current: Option<usize>,
                       target: &RawTarget|
         -> StepAddr {
            let (flow_name, label) = match target.text.split_once(':') {
                Some((f, l)) => (Some(f), l),
                None if current.is_some() => (None, target.text.as_str()),
                None => (Some(target.text.as_str()), "start"),
            };
            let flow = match flow_name {
                Some(name) => match flow_index.get(name) {
                    Some(&i) => i,
                    None => {
                        diags.push(file, target.line, format!("goto to unknown flow `{name}`"));
                        return StepAddr { flow: 0, step: 0 };
                    }
                },
                None => current.unwrap_or(0),
            };
            if label == "start" {
                return StepAddr { flow, step: 0 };
            }
            match labels.get(flow).and_then(|m| m.get(label)) {
                Some(&step) => StepAddr { flow, step },
                None => {
                    let flow_name = flow_names.get(flow).map(String::as_str).unwrap_or("");
                    diags.push(
                        file,
                        target.line,
                        format!("goto to unknown label `{label}` in flow `{flow_name}`"),
                    );
                    StepAddr { flow, step: 0 }
                }
            }
        };

        // Entries: one per called user, plus the "*" default.
        let mut entries = BTreeMap::new();
        let mut default_entry = None;
        for e in std::mem::take(&mut self.entries) {
            let addr = resolve(&mut self.diags, e.file, None, &e.target);
            if e.user == "*" {
                default_entry = Some(addr);
            } else {
                entries.insert(e.user, addr);
            }
        }
        if default_entry.is_none() {
            let (file, line) = self.entry_file.unwrap_or((0, 1));
            self.diags.push(
                file,
                line,
                "[entry] needs a \"*\" flow for calls to any other user".into(),
            );
        }
        let on_error = match self.on_error.take() {
            Some((target, file)) => Some(resolve(&mut self.diags, file, None, &target)),
            None => {
                if self.settings_file.is_none() {
                    self.diags.push(
                        0,
                        1,
                        "no [settings] with `on_error` in any dialplan file".into(),
                    );
                }
                None
            }
        };

        // Variable uses against declarations.
        for (var, use_, file, line) in std::mem::take(&mut self.var_uses) {
            let decl = self.vars.get(&var);
            let action_var = ACTION_VARIABLES.contains(&var.as_str());
            let message = match (&use_, decl) {
                (VarUse::Play, _) if action_var => None,
                (VarUse::Input(InputKind::Audio), Some(d)) if !d.audio => Some(format!(
                    "`{var}` must be a spoken answer, collected with `audio = true`"
                )),
                (VarUse::Input(InputKind::Audio), Some(_)) => None,
                (_, Some(d)) if d.audio => Some(format!(
                    "`{var}` holds a spoken answer: it can only be the input of a voice action"
                )),
                (VarUse::Play, Some(d)) if d.secret => {
                    Some(format!("`${{{var}}}` is secret and cannot be played"))
                }
                (VarUse::Play, Some(_)) => None,
                (VarUse::Branch, Some(d)) if d.secret => {
                    Some(format!("cannot branch on secret `{var}`"))
                }
                (VarUse::Branch, Some(_)) => None,
                (VarUse::Input(InputKind::Secret), Some(d)) if !d.secret => Some(format!(
                    "`{var}` carries a PIN or answer and must be collected with `secret = true`"
                )),
                (VarUse::Input(InputKind::Plain), Some(d)) if d.secret => {
                    Some(format!("`{var}` is secret and cannot be sent as a number"))
                }
                (VarUse::Input(_), Some(_)) => None,
                (_, None) => Some(format!(
                    "unknown variable `{var}` (not collected anywhere, and not one of {})",
                    ACTION_VARIABLES.join(", ")
                )),
            };
            if let Some(message) = message {
                self.diags.push(file, line, message);
            }
        }

        // Resolve every target, and check branches and flow ends.
        let all_outcomes: BTreeSet<&str> = ActionKind::ALL
            .iter()
            .flat_map(|k| k.outcomes().iter().copied())
            .chain(COMMON_OUTCOMES)
            .collect();
        let mut flows: Vec<Flow> = Vec::with_capacity(flows_raw.len());
        for (fi, (flow, _, _)) in flows_raw.iter_mut().enumerate() {
            let mut steps = Vec::with_capacity(flow.steps.len());
            let mut previous_action: Option<ActionKind> = None;
            for step in std::mem::take(&mut flow.steps) {
                let file = step.file;
                let mut r = |t: &RawTarget| resolve(&mut self.diags, file, Some(fi), t);
                let kind = match step.kind {
                    StepKind::Play(p) => StepKind::Play(p),
                    StepKind::Hangup => StepKind::Hangup,
                    StepKind::Action(a) => StepKind::Action(a),
                    StepKind::Goto(t) => StepKind::Goto(r(&t)),
                    StepKind::Collect(c) => {
                        let c = *c;
                        let on_failure = r(&c.on_failure);
                        StepKind::Collect(Box::new(CollectStep {
                            var: c.var,
                            prompts: c.prompts,
                            invalid_prompts: c.invalid_prompts,
                            no_input_prompts: c.no_input_prompts,
                            digits_min: c.digits_min,
                            digits_max: c.digits_max,
                            terminator: c.terminator,
                            first_digit_timeout_ms: c.first_digit_timeout_ms,
                            inter_digit_timeout_ms: c.inter_digit_timeout_ms,
                            speech_timeout_ms: c.speech_timeout_ms,
                            speech_confidence_min: c.speech_confidence_min,
                            attempts: c.attempts,
                            valid: c.valid,
                            check: c.check,
                            secret: c.secret,
                            audio: c.audio,
                            mode: c.mode,
                            barge_in: c.barge_in,
                            flush: c.flush,
                            on_failure,
                        }))
                    }
                    StepKind::Branch(b) => {
                        let cases: Vec<(String, StepAddr)> =
                            b.cases.iter().map(|(k, t)| (k.clone(), r(t))).collect();
                        let default = b.default.as_ref().map(&mut r);
                        // Case names must be outcomes that can happen here.
                        for (key, target) in &b.cases {
                            let problem = match (&b.on, previous_action) {
                                (BranchOn::Outcome, Some(kind))
                                    if step.label.is_none()
                                        && !kind.outcomes().contains(&key.as_str())
                                        && !COMMON_OUTCOMES.contains(&key.as_str()) =>
                                {
                                    Some(format!(
                                        "action `{}` has no outcome `{key}` (it has: {})",
                                        kind.name(),
                                        kind.outcomes()
                                            .iter()
                                            .chain(COMMON_OUTCOMES.iter())
                                            .copied()
                                            .collect::<Vec<_>>()
                                            .join(", ")
                                    ))
                                }
                                (BranchOn::Outcome, _) if !all_outcomes.contains(key.as_str()) => {
                                    Some(format!("no action has an outcome `{key}`"))
                                }
                                (BranchOn::Var(var), _) => match self.vars.get(var) {
                                    Some(d) if !d.valid.is_empty() && !d.valid.contains(key) => {
                                        Some(format!(
                                            "`{var}` can only be {}; case `{key}` never matches",
                                            d.valid.join(", ")
                                        ))
                                    }
                                    _ => None,
                                },
                                _ => None,
                            };
                            if let Some(message) = problem {
                                self.diags.push(file, target.line, message);
                            }
                        }
                        StepKind::Branch(BranchStep {
                            on: b.on,
                            cases,
                            default,
                        })
                    }
                };
                previous_action = match &kind {
                    StepKind::Action(a) => Some(a.kind),
                    _ => None,
                };
                steps.push(Step {
                    file: step.file,
                    line: step.line,
                    label: step.label,
                    kind,
                });
            }
            // Falling off the end of a flow is a mistake, not a hang-up.
            if let Some(last) = steps.last() {
                if matches!(
                    last.kind,
                    StepKind::Play(_) | StepKind::Collect(_) | StepKind::Action(_)
                ) {
                    self.diags.push(
                        last.file,
                        last.line,
                        format!(
                            "flow `{}` ends in a step that continues to nothing; end it with \
                             `goto` or `hangup`",
                            flow.name
                        ),
                    );
                }
            }
            flows.push(Flow {
                name: flow.name.clone(),
                steps,
            });
        }

        let default_entry = default_entry?;
        let on_error = on_error?;
        // Reachability is only meaningful once every step parsed and every target resolved;
        // otherwise it would repeat the problems already reported.
        if flows.is_empty() || !self.diags.list.is_empty() {
            return None;
        }
        // Every step must be reachable from an entry or the error flow.
        let mut seen: BTreeSet<StepAddr> = BTreeSet::new();
        let mut queue: VecDeque<StepAddr> = VecDeque::new();
        queue.extend(entries.values().copied());
        queue.push_back(default_entry);
        queue.push_back(on_error);
        while let Some(at) = queue.pop_front() {
            let Some(step) = flows.get(at.flow).and_then(|f| f.steps.get(at.step)) else {
                continue;
            };
            if !seen.insert(at) {
                continue;
            }
            let next = StepAddr {
                flow: at.flow,
                step: at.step + 1,
            };
            match &step.kind {
                StepKind::Play(_) | StepKind::Action(_) => queue.push_back(next),
                StepKind::Collect(c) => {
                    queue.push_back(next);
                    queue.push_back(c.on_failure);
                }
                StepKind::Branch(b) => {
                    queue.extend(b.cases.iter().map(|(_, t)| *t));
                    queue.extend(b.default);
                }
                StepKind::Goto(t) => queue.push_back(*t),
                StepKind::Hangup => {}
            }
        }
        for (fi, flow) in flows.iter().enumerate() {
            for (si, step) in flow.steps.iter().enumerate() {
                if !seen.contains(&StepAddr { flow: fi, step: si }) {
                    self.diags.push(
                        step.file,
                        step.line,
                        format!(
                            "step is never reached (flow `{}`); label it and go to it, or remove it",
                            flow.name
                        ),
                    );
                }
            }
        }
        Some(Dialplan {
            prompts: self.prompts.clone(),
            files: self.files.clone(),
            flows,
            entries,
            default_entry,
            on_error,
            settings: self.settings.clone(),
        })
    }
}

/// The repository's `dialplan/` folder (see `repo_prompts_dir`).
#[cfg(test)]
pub(super) fn repo_dialplan_dir() -> PathBuf {
    Path::new(file!())
        .ancestors()
        .nth(4)
        .map(Path::to_path_buf)
        .unwrap_or_default()
        .join("dialplan")
}
