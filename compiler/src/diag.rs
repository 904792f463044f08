//! Diagnostics: a code, a message, a primary span, secondary labels and a hint.
//! Rendered with ariadne; every user-facing error of the compiler is one of these.

use crate::source::{SourceMap, Span};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone)]
pub struct Diagnostic {
    pub severity: Severity,
    /// `E0xxx`; the table of codes lives in docs/diagnostics.md.
    pub code: &'static str,
    pub message: String,
    pub span: Span,
    pub label: String,
    pub notes: Vec<(Span, String)>,
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn error(code: &'static str, span: impl Into<Span>, message: impl Into<String>) -> Self {
        let message = message.into();
        let span = span.into();
        Diagnostic {
            severity: Severity::Error,
            code,
            label: message.clone(),
            message,
            span,
            notes: Vec::new(),
            hint: None,
        }
    }

    pub fn warning(code: &'static str, span: impl Into<Span>, message: impl Into<String>) -> Self {
        Diagnostic { severity: Severity::Warning, ..Self::error(code, span, message) }
    }

    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    pub fn with_note(mut self, span: impl Into<Span>, note: impl Into<String>) -> Self {
        self.notes.push((span.into(), note.into()));
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// A plain one-line form, `file:line:col: error[E0xxx]: message`, for logs and tests.
    pub fn one_line(&self, sources: &SourceMap) -> String {
        let (line, col) = sources.line_col(self.span.file, self.span.start);
        let kind = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        format!("{}:{}:{}: {}[{}]: {}", sources.get(self.span.file).name, line, col, kind, self.code, self.message)
    }

    /// The full report with source excerpts, as the command line prints it.
    pub fn render(&self, sources: &SourceMap, color: bool) -> String {
        use ariadne::{Config, Label, Report, ReportKind};
        let kind = match self.severity {
            Severity::Error => ReportKind::Error,
            Severity::Warning => ReportKind::Warning,
        };
        let name = |s: &Span| sources.get(s.file).name.clone();
        let (line, col) = sources.line_col(self.span.file, self.span.start);
        let mut report = Report::build(kind, name(&self.span), self.span.start)
            // Spans are byte offsets; ariadne counts characters unless told, which misplaces labels
            // after any non-ASCII text (a `−` or `²` in a comment).
            .with_config(Config::default().with_color(color).with_index_type(ariadne::IndexType::Byte))
            .with_code(self.code)
            .with_message(format!("{} (line {line}, column {col})", self.message))
            .with_label(Label::new((name(&self.span), self.span.start..self.span.end)).with_message(&self.label));
        for (span, note) in &self.notes {
            report = report.with_label(Label::new((name(span), span.start..span.end)).with_message(note));
        }
        if let Some(hint) = &self.hint {
            report = report.with_help(hint);
        }
        let cache = ariadne::sources(sources.files().map(|(_, f)| (f.name.clone(), f.text.clone())));
        let mut out = Vec::new();
        let _ = report.finish().write(cache, &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// Collects diagnostics across passes; passes keep going after an error where they can,
/// so one run reports several mistakes.
#[derive(Debug, Default)]
pub struct Diagnostics {
    pub list: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.list.push(d);
    }
    pub fn has_errors(&self) -> bool {
        self.list.iter().any(Diagnostic::is_error)
    }
    pub fn error_count(&self) -> usize {
        self.list.iter().filter(|d| d.is_error()).count()
    }
}
