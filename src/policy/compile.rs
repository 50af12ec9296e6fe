//! Policy files -> [`PolicySet`], once, at load, reporting every problem.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::config::reader::{
    Diagnostic, Diagnostics, Reporter, SourceFile, TableReader, Value, as_array, as_choice,
    as_number, as_str, as_u64, did_you_mean, one_of_hint,
};
use crate::config::{Config, window_fits};
use crate::metrics::{MetricId, is_valid_metric_name};
use crate::units::{self, Percent, Window};

use super::model::{
    Amount, Comparison, Condition, CusumParams, Direction, EwmaParams, Mode, Node, NodeId,
    PATTERN_BASE, Policy, PolicySet, Quorum, RateUnit, Severity, Template,
};

/// The condition kinds, for messages and suggestions.
pub const CONDITION_KINDS: [&str; 11] = [
    "threshold",
    "change",
    "rate",
    "sum",
    "deviation",
    "stale",
    "ewma",
    "cusum",
    "all",
    "any",
    "at_least",
];

/// The `*.toml` files in `dir` and its subfolders, sorted by path.
fn toml_files_under(dir: &Path, problems: &mut Diagnostics) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        match std::fs::read_dir(&folder) {
            Ok(entries) => {
                for p in entries.filter_map(|e| e.ok().map(|e| e.path())) {
                    if p.is_dir() {
                        folders.push(p);
                    } else if p.is_file() && p.extension().is_some_and(|e| e == "toml") {
                        found.push(p);
                    }
                }
            }
            Err(e) => problems.0.push(file_problem(
                &folder,
                &format!("cannot read the folder: {e}"),
            )),
        }
    }
    found.sort();
    found
}

/// Expands policy paths: a file is taken as is; a directory gives its `*.toml`
/// files and those of its subfolders, sorted.
pub fn policy_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Diagnostics> {
    let mut files = Vec::new();
    let mut problems = Diagnostics::default();
    for path in paths {
        if path.is_dir() {
            let found = toml_files_under(path, &mut problems);
            if found.is_empty() && problems.0.is_empty() {
                problems.0.push(file_problem(
                    path,
                    "the folder and its subfolders hold no .toml policy files",
                ));
            }
            files.extend(found);
        } else if path.is_file() {
            files.push(path.clone());
        } else {
            problems
                .0
                .push(file_problem(path, "no such file or folder"));
        }
    }
    problems.into_result(files)
}

fn file_problem(path: &Path, message: &str) -> Diagnostic {
    Diagnostic {
        file: path.to_path_buf(),
        line: 0,
        column: 0,
        message: message.to_string(),
        hint: None,
        excerpt: None,
    }
}

/// Loads and compiles every policy in `paths` against `config`.
pub fn load_policies(paths: &[PathBuf], config: &Config) -> Result<PolicySet, Diagnostics> {
    let files = policy_files(paths)?;
    let mut sources = Vec::new();
    let mut problems = Diagnostics::default();
    for f in &files {
        match SourceFile::read(f) {
            Ok(s) => sources.push(s),
            Err(d) => problems.extend(d),
        }
    }
    let mut builder = Builder::new(config);
    for file in &sources {
        let mut r = Reporter::new(file);
        builder.file(&mut r);
        problems.extend(r.found);
    }
    problems.extend(builder.instantiate_from_config());
    if builder.set.policies.is_empty() && builder.set.templates.is_empty() && problems.is_empty() {
        problems.0.push(Diagnostic {
            file: files.first().cloned().unwrap_or_default(),
            line: 0,
            column: 0,
            message: "no policies were found".into(),
            hint: Some("a policy file holds one or more [[policy]] tables".into()),
            excerpt: None,
        });
    }
    problems.into_result(builder.set)
}

/// Compiles policies from text (for tests and tools).
pub fn compile_str(name: &str, text: &str, config: &Config) -> Result<PolicySet, Diagnostics> {
    let file = SourceFile::new(name, text.to_string());
    let mut r = Reporter::new(&file);
    let mut builder = Builder::new(config);
    builder.file(&mut r);
    let mut found = r.found;
    found.extend(builder.instantiate_from_config());
    found.into_result(builder.set)
}

struct Builder<'c> {
    config: &'c Config,
    set: PolicySet,
    metric_ids: HashMap<String, MetricId>,
    /// Policy id -> where it was first defined.
    ids: HashMap<String, String>,
    /// The bound metric patterns the policy being compiled reads (a template when any).
    patterns: Vec<String>,
}

impl<'c> Builder<'c> {
    fn new(config: &'c Config) -> Self {
        Self {
            config,
            set: PolicySet::default(),
            metric_ids: HashMap::new(),
            ids: HashMap::new(),
            patterns: Vec::new(),
        }
    }

    /// With a configuration, instantiates templates over its declared metrics;
    /// a template that matches none is an error (it could never trip).
    fn instantiate_from_config(&mut self) -> Diagnostics {
        let mut problems = Diagnostics::default();
        if !self.config.is_declarative() || self.set.templates.is_empty() {
            return problems;
        }
        let names = self.config_metric_names();
        let found = self.set.instantiate(names);
        self.set.warnings.extend(found.notes);
        for t in &self.set.templates {
            if t.instances.is_empty() {
                let (file, line) = t
                    .policy
                    .origin
                    .rsplit_once(':')
                    .map_or((t.policy.origin.as_str(), 0), |(f, l)| {
                        (f, l.parse().unwrap_or(0))
                    });
                problems.0.push(Diagnostic {
                    file: PathBuf::from(file),
                    line,
                    column: 1,
                    message: format!(
                        "policy `{}`: its pattern(s) {} match no metric defined under [metrics]; it could never trip",
                        t.policy.id,
                        t.patterns.join(", ")
                    ),
                    hint: Some("define the metrics under [metrics], bind the pattern to your names under [bind] (e.g. \"lend.cash.*\" = \"mymarket.cash.*\"), or remove the policy".into()),
                    excerpt: None,
                });
            }
        }
        problems
    }

    /// The names of the metrics the configuration defines.
    fn config_metric_names(&self) -> Vec<&'c str> {
        self.config
            .metrics
            .iter()
            .map(|m| m.name.as_str())
            .collect()
    }

    fn file(&mut self, r: &mut Reporter<'_>) {
        let Some(doc) = r.parse() else { return };
        let mut top = TableReader::new(doc.get_ref(), doc.span(), "the policy file");
        match top.get("policy") {
            Some(v) => {
                if let Some(items) = as_array(v, "policy", r) {
                    for item in items {
                        self.policy(item, r);
                    }
                }
            }
            None => r.error(
                &(0..0),
                "the file defines no policy",
                Some("add a [[policy]] table".into()),
            ),
        }
        top.finish(r);
    }

    fn policy(&mut self, value: &Value<'_>, r: &mut Reporter<'_>) {
        let Some(mut t) = TableReader::from_value(value, "[[policy]]", r) else {
            return;
        };
        let (line, _) = r.file.location(value.span().start);
        let origin = format!("{}:{line}", r.file.path.display());
        let first_node = self.set.nodes.len();
        self.patterns.clear();
        let id = t.required_string("id", r).and_then(|(id, span)| {
            let valid = is_valid_metric_name(id);
            let message = format!("policy id `{id}` may only use letters, digits and _ . : -");
            check(valid, &span, message, None, r)?;
            if let Some(first) = self.ids.get(id) {
                r.error(
                    &span,
                    format!("duplicate policy id `{id}`"),
                    Some(format!("it is first defined at {first}")),
                );
                return None;
            }
            self.ids.insert(id.to_string(), origin.clone());
            Some(id.to_string())
        });
        t.context = match &id {
            Some(id) => format!("policy `{id}`"),
            None => "this policy".to_string(),
        };
        let ctx = t.context.clone();
        let description = t
            .required_string("description", r)
            .map(|(s, _)| s.to_string());
        let severity = t
            .require("severity", r)
            .and_then(|v| as_choice(v, "severity", &Severity::CHOICES, r));
        let action = t.required_string("action", r).and_then(|(a, span)| {
            if self.config.is_declarative() && !self.config.actions.contains_key(a) {
                let known: Vec<&str> = self.config.actions.keys().map(String::as_str).collect();
                let hint = unknown_hint(a, &known, "[actions]", "actions defined");
                r.error(&span, format!("{ctx}: unknown action `{a}`"), Some(hint));
                None
            } else {
                Some(a.to_string())
            }
        });
        let cooldown = t
            .require("cooldown", r)
            .and_then(|v| self.window(v, &format!("{ctx}: cooldown"), r));
        let mode = match t.get("mode") {
            Some(v) => as_choice(v, "mode", &Mode::CHOICES, r),
            None => Some(Mode::Enforce),
        };
        let notify = t.get("notify").map(|v| self.notify(v, &ctx, r));
        let root = match t.require("when", r) {
            Some(v) => match TableReader::from_value(v, format!("{ctx}.when"), r) {
                Some(w) => self.condition(w, None, r),
                None => None,
            },
            None => None,
        };
        t.finish(r);
        if let (
            Some(id),
            Some(description),
            Some(severity),
            Some(action),
            Some(cooldown),
            Some(mode),
            Some(root),
        ) = (id, description, severity, action, cooldown, mode, root)
        {
            let policy = Policy {
                id,
                description,
                severity,
                action,
                cooldown,
                mode,
                root,
                origin,
                notify,
                instance: None,
            };
            if self.patterns.is_empty() {
                self.set.policies.push(policy);
            } else {
                self.push_template(policy, first_node);
            }
        }
    }

    /// Moves a policy over patterns (its nodes from `first_node` on) into a template.
    fn push_template(&mut self, mut policy: Policy, first_node: usize) {
        let base = first_node as u32;
        let local = |n: NodeId| NodeId(n.0 - base);
        let nodes: Vec<Node> = self
            .set
            .nodes
            .drain(first_node..)
            .map(|mut n| {
                n.parent = n.parent.map(local);
                n.condition = n.condition.remap(|m| m, local);
                n
            })
            .collect();
        policy.root = local(policy.root);
        self.set.templates.push(Template {
            policy,
            nodes,
            patterns: std::mem::take(&mut self.patterns),
            instances: Vec::new(),
        });
    }

    /// A metric pattern with one `*` (a template's metric), after `[bind]`.
    fn pattern_named(
        &mut self,
        name: &str,
        span: Range<usize>,
        ctx: &str,
        r: &mut Reporter<'_>,
    ) -> Option<MetricId> {
        let valid = |p: &str| {
            p.matches('*').count() == 1
                && p.split('*')
                    .all(|part| part.is_empty() || is_valid_metric_name(part))
        };
        let message = format!("{ctx}: `{name}` is not a valid metric pattern");
        let hint = "a pattern has exactly one `*` standing for a part of the name, e.g. \"lend.cash.*\"; the rest uses letters, digits and _ . : -";
        check(valid(name), &span, message, Some(hint.into()), r)?;
        let bound = self.config.bound_name(name).to_string();
        let message =
            format!("{ctx}: `{name}` is bound to `{bound}`, which is not a pattern with one `*`");
        let hint = format!(
            "bind a pattern to a pattern under [bind], e.g. \"{name}\" = \"mymarket.{}\"",
            name.rsplit('.').next().unwrap_or("*")
        );
        check(valid(&bound), &span, message, Some(hint), r)?;
        let i = match self.patterns.iter().position(|p| *p == bound) {
            Some(i) => i,
            None => {
                self.patterns.push(bound);
                self.patterns.len() - 1
            }
        };
        Some(MetricId(PATTERN_BASE + i as u32))
    }

    /// `notify = ["ops", "pager"]`: alert channels, checked against `[notify]` when a configuration is given.
    fn notify(&self, value: &Value<'_>, ctx: &str, r: &mut Reporter<'_>) -> Vec<String> {
        let mut out = Vec::new();
        for item in as_array(value, &format!("{ctx}: notify"), r).unwrap_or_default() {
            let Some(name) = as_str(item, &format!("{ctx}: a notify channel"), r) else {
                continue;
            };
            if self.config.is_declarative() && !self.config.notify.contains_key(name) {
                let known: Vec<&str> = self.config.notify.keys().map(String::as_str).collect();
                let hint =
                    unknown_hint(name, &known, "[notify.<name>] channels", "channels defined");
                r.error(
                    &item.span(),
                    format!("{ctx}: unknown notify channel `{name}`"),
                    Some(hint),
                );
                continue;
            }
            out.push(name.to_string());
        }
        out
    }

    fn window(&self, value: &Value<'_>, what: &str, r: &mut Reporter<'_>) -> Option<Window> {
        let text = as_str(value, what, r)?;
        in_units(units::parse_window(text), value, what, r)
    }

    /// A window that some metric's history must cover.
    fn history_window(
        &self,
        value: &Value<'_>,
        what: &str,
        r: &mut Reporter<'_>,
    ) -> Option<Window> {
        let w = self.window(value, what, r)?;
        if let Err(message) = window_fits(self.config, w) {
            r.error(
                &value.span(),
                format!("{what}: {message}"),
                Some(
                    "shorten the window, or raise `history_blocks` / `history` under [guardian]"
                        .into(),
                ),
            );
            return None;
        }
        let message = format!("{what}: a window must be longer than zero");
        check(!is_zero(w), &value.span(), message, None, r)?;
        Some(w)
    }

    fn metric(
        &mut self,
        t: &mut TableReader<'_, '_>,
        key: &'static str,
        r: &mut Reporter<'_>,
    ) -> Option<MetricId> {
        let (name, span) = t.required_string(key, r)?;
        self.metric_named(name, span, &t.context.clone(), r)
    }

    fn metric_named(
        &mut self,
        name: &str,
        span: Range<usize>,
        ctx: &str,
        r: &mut Reporter<'_>,
    ) -> Option<MetricId> {
        if name.contains('*') {
            return self.pattern_named(name, span, ctx, r);
        }
        let message = format!("{ctx}: `{name}` is not a valid metric name");
        let hint = "metric names use letters, digits and _ . : -";
        check(
            is_valid_metric_name(name),
            &span,
            message,
            Some(hint.into()),
            r,
        )?;
        let bound = self.config.bound_name(name).to_string();
        if self.config.is_declarative() && self.config.metric(&bound).is_none() {
            let known = self.config_metric_names();
            let hint = match did_you_mean(&bound, known.iter().copied()) {
                Some(k) => format!("did you mean `{k}`?"),
                None if bound != name => format!(
                    "define `{bound}` under [metrics], or change the [bind] entry \"{name}\" = \"{bound}\" to a metric that is defined"
                ),
                None => "define it under [metrics] in the configuration, or bind this name to one under [bind]".to_string(),
            };
            let shown = if bound == name {
                format!("`{name}`")
            } else {
                format!("`{name}` (bound to `{bound}`)")
            };
            r.error(&span, format!("{ctx}: unknown metric {shown}"), Some(hint));
            return None;
        }
        let next = MetricId(self.set.metric_names.len() as u32);
        let id = *self.metric_ids.entry(bound.clone()).or_insert(next);
        if id == next {
            self.set.metric_names.push(bound);
        }
        Some(id)
    }

    fn amount(
        &self,
        value: &Value<'_>,
        what: &str,
        percent_only: bool,
        r: &mut Reporter<'_>,
    ) -> Option<Amount> {
        match value.get_ref() {
            toml::de::DeValue::String(s) => {
                in_units(units::parse_percent(s), value, what, r).map(Amount::Percent)
            }
            toml::de::DeValue::Integer(_) | toml::de::DeValue::Float(_) if percent_only => {
                let shown = value
                    .get_ref()
                    .as_float()
                    .map(|f| f.as_str().to_string())
                    .or_else(|| value.get_ref().as_integer().map(|i| i.as_str().to_string()))
                    .unwrap_or_default();
                r.error(
                    &value.span(),
                    format!("{what}: expected a percent, found the bare number {shown}"),
                    Some(format!("write it with its unit, e.g. \"{shown}%\"; a fraction such as 0.1 is never read as a percent")),
                );
                None
            }
            _ => as_number(value, what, r).map(Amount::Absolute),
        }
    }

    fn percent(&self, value: &Value<'_>, what: &str, r: &mut Reporter<'_>) -> Option<Percent> {
        match self.amount(value, what, true, r)? {
            Amount::Percent(p) => Some(p),
            Amount::Absolute(_) => None,
        }
    }

    fn positive(&self, value: Option<&Value<'_>>, what: &str, r: &mut Reporter<'_>) -> Option<f64> {
        let value = value?;
        let n = as_number(value, what, r)?;
        let message = format!("{what} must be greater than zero");
        check(n > 0.0, &value.span(), message, None, r)?;
        Some(n)
    }

    fn warmup(&self, value: Option<&Value<'_>>, what: &str, r: &mut Reporter<'_>) -> Option<u32> {
        let value = value?;
        let n = as_u64(value, what, r)?;
        let message = format!("{what} must be at least 2 samples (a baseline needs a spread)");
        check(
            (2..=u32::MAX as u64).contains(&n),
            &value.span(),
            message,
            None,
            r,
        )?;
        Some(n as u32)
    }

    fn push_node(
        &mut self,
        condition: Condition,
        hold: Option<units::Hold>,
        parent: Option<NodeId>,
    ) -> NodeId {
        let id = NodeId(self.set.nodes.len() as u32);
        self.set.nodes.push(Node {
            condition,
            hold,
            parent,
            within: None,
        });
        id
    }

    fn condition(
        &mut self,
        mut t: TableReader<'_, '_>,
        parent: Option<NodeId>,
        r: &mut Reporter<'_>,
    ) -> Option<NodeId> {
        let ctx = t.context.clone();
        let kind = t.required_string("kind", r);
        let hold = t.get("for").and_then(|v| {
            let text = as_str(v, "for", r)?;
            in_units(units::parse_hold(text), v, &format!("{ctx}: for"), r)
        });
        let within = t.get("within").map(|v| {
            let w = self.window(v, &format!("{ctx}: within"), r)?;
            let composite = matches!(kind.as_ref().map(|k| k.0), Some("all" | "any" | "at_least"));
            let message = format!("{ctx}: `within` applies to composites (all, any, at_least)");
            let hint = "put the conditions that must corroborate each other under `all` and give the `all` a `within`";
            check(composite, &v.span(), message, Some(hint.into()), r)?;
            Some(w)
        });
        let Some((kind, kind_span)) = kind else {
            t.finish(r);
            return None;
        };
        if matches!(kind, "all" | "any" | "at_least") {
            let quorum = match kind {
                "all" => Some(Quorum::All),
                "any" => Some(Quorum::Any),
                _ => t.require("count", r).and_then(|v| {
                    let n = as_u64(v, "count", r)?;
                    let fits = (1..=u32::MAX as u64).contains(&n);
                    check(fits, &v.span(), "count must be at least 1", None, r)?;
                    Some(Quorum::AtLeast(n as u32))
                }),
            };
            // Reserve this node first so children can name it as parent.
            let me = self.push_node(
                Condition::Composite {
                    quorum: Quorum::Any,
                    children: Vec::new(),
                },
                hold,
                parent,
            );
            let mut children = Vec::new();
            let mut ok = true;
            if let Some(v) = t.require("of", r) {
                let items = as_array(v, "of", r).unwrap_or_default();
                if items.is_empty() {
                    r.error(&v.span(), format!("{ctx}: `of` lists no conditions"), None);
                    ok = false;
                }
                for (i, item) in items.iter().enumerate() {
                    match TableReader::from_value(item, format!("{ctx}.of[{i}]"), r)
                        .and_then(|c| self.condition(c, Some(me), r))
                    {
                        Some(child) => children.push(child),
                        None => ok = false,
                    }
                }
                if let Some(Quorum::AtLeast(k)) = quorum
                    && k as usize > items.len()
                {
                    r.error(
                        &v.span(),
                        format!(
                            "{ctx}: at_least {k} of only {} conditions can never hold",
                            items.len()
                        ),
                        None,
                    );
                    ok = false;
                }
            } else {
                ok = false;
            }
            t.finish(r);
            let quorum = quorum?;
            if !ok {
                return None;
            }
            let within = optional(within)?;
            let node = &mut self.set.nodes[me.0 as usize];
            node.condition = Condition::Composite { quorum, children };
            node.within = within;
            return Some(me);
        }
        if kind == "cusum"
            && let Some(v) = t.get("for")
        {
            r.error(
                &v.span(),
                format!("{ctx}: `for` cannot be used with cusum"),
                Some("a CUSUM restarts from zero after it trips, so it never holds twice in a row; raise `threshold` instead".into()),
            );
        }
        let Some(condition) = self.leaf(kind, kind_span, &ctx, &mut t, r) else {
            // An unknown kind makes every other field look unknown: report the kind only.
            if CONDITION_KINDS.contains(&kind) {
                t.finish(r);
            }
            return None;
        };
        t.finish(r);
        Some(self.push_node(condition, hold, parent))
    }

    /// A leaf condition of `kind`; `None` after reporting what is wrong.
    fn leaf(
        &mut self,
        kind: &str,
        kind_span: Range<usize>,
        ctx: &str,
        t: &mut TableReader<'_, '_>,
        r: &mut Reporter<'_>,
    ) -> Option<Condition> {
        let read: fn(&mut Self, Leaf<'_, '_, '_, '_>) -> Option<Condition> = match kind {
            "threshold" => Self::threshold,
            "change" => Self::change,
            "rate" => Self::rate,
            "sum" => Self::sum,
            "deviation" => Self::deviation,
            "stale" => Self::stale,
            "ewma" => Self::ewma,
            "cusum" => Self::cusum,
            other => {
                let hint = one_of_hint(other, &CONDITION_KINDS);
                r.error(
                    &kind_span,
                    format!("{ctx}: `{other}` is not a condition kind"),
                    Some(hint),
                );
                return None;
            }
        };
        // Every leaf watches a metric; it is read first, so its problems come first.
        let metric = self.metric(t, "metric", r);
        read(self, Leaf { ctx, t, r, metric })
    }

    /// A condition's `window`, within what the metric's history keeps.
    fn window_field(
        &self,
        ctx: &str,
        t: &mut TableReader<'_, '_>,
        r: &mut Reporter<'_>,
    ) -> Option<Window> {
        t.require("window", r)
            .and_then(|v| self.history_window(v, &format!("{ctx}: window"), r))
    }

    /// `threshold`: a metric compared with a value.
    fn threshold(&mut self, Leaf { t, r, metric, .. }: Leaf<'_, '_, '_, '_>) -> Option<Condition> {
        let comparison = comparison(t, r);
        let value = t.require("value", r).and_then(|v| as_number(v, "value", r));
        Some(Condition::Threshold {
            metric: metric?,
            comparison: comparison?,
            value: value?,
        })
    }

    /// `change`: a metric moving by an amount within a window.
    fn change(&mut self, Leaf { ctx, t, r, metric }: Leaf<'_, '_, '_, '_>) -> Option<Condition> {
        let window = self.window_field(ctx, t, r);
        let direction = direction(t, r);
        let by = t.require("by", r).and_then(|v| {
            let by = self.amount(v, &format!("{ctx}: by"), false, r)?;
            let size = match by {
                Amount::Absolute(a) => a,
                Amount::Percent(p) => p.0,
            };
            let message =
                format!("{ctx}: by must be greater than zero (the direction says which way)");
            check(size > 0.0, &v.span(), message, None, r)?;
            Some(by)
        });
        Some(Condition::Change {
            metric: metric?,
            window: window?,
            direction: direction?,
            by: by?,
        })
    }

    /// `rate`: a metric's rate of change per unit within a window.
    fn rate(&mut self, Leaf { ctx, t, r, metric }: Leaf<'_, '_, '_, '_>) -> Option<Condition> {
        let window = self.window_field(ctx, t, r);
        let per = t
            .require("per", r)
            .and_then(|v| as_choice(v, "rate unit", &RateUnit::CHOICES, r));
        let direction = direction(t, r);
        let above = self.positive(t.require("above", r), &format!("{ctx}: above"), r);
        Some(Condition::Rate {
            metric: metric?,
            window: window?,
            per: per?,
            direction: direction?,
            above: above?,
        })
    }

    /// `sum`: a metric summed over a window, against an amount or a share of another metric.
    fn sum(&mut self, Leaf { ctx, t, r, metric }: Leaf<'_, '_, '_, '_>) -> Option<Condition> {
        let window = self.window_field(ctx, t, r);
        let comparison = comparison(t, r);
        let relative_to = if t.has("relative_to") {
            Some(self.metric(t, "relative_to", r))
        } else {
            None
        };
        let value = t.require("value", r).and_then(|v| {
            let amount = self.amount(v, "value", relative_to.is_some(), r)?;
            let stands_alone = relative_to.is_some() || !matches!(amount, Amount::Percent(_));
            let message =
                format!("{ctx}: a percent needs `relative_to`, the metric it is a percent of");
            let hint =
                "add relative_to = \"<liquidity metric>\", or give an amount in the metric's units";
            check(stands_alone, &v.span(), message, Some(hint.into()), r)?;
            Some(amount)
        });
        let relative_to = optional(relative_to)?;
        Some(Condition::Sum {
            metric: metric?,
            window: window?,
            comparison: comparison?,
            value: value?,
            relative_to,
        })
    }

    /// `deviation`: two metrics apart by more than a percent.
    fn deviation(&mut self, Leaf { ctx, t, r, metric }: Leaf<'_, '_, '_, '_>) -> Option<Condition> {
        let reference = self.metric(t, "reference", r);
        let above = t.require("above", r).and_then(|v| {
            let p = self.percent(v, &format!("{ctx}: above"), r)?;
            let message = format!("{ctx}: above must be greater than 0%");
            check(p.0 > 0.0, &v.span(), message, None, r)?;
            Some(p)
        });
        let max_skew = t
            .get("max_skew")
            .map(|v| self.window(v, &format!("{ctx}: max_skew"), r));
        let max_skew = optional(max_skew)?;
        Some(Condition::Deviation {
            metric: metric?,
            reference: reference?,
            above: above?,
            max_skew,
        })
    }

    /// `stale`: a metric not updated for a while.
    fn stale(&mut self, Leaf { ctx, t, r, metric }: Leaf<'_, '_, '_, '_>) -> Option<Condition> {
        let after = t.require("after", r).and_then(|v| {
            let w = self.window(v, &format!("{ctx}: after"), r)?;
            let message = format!("{ctx}: after must be longer than zero");
            check(!is_zero(w), &v.span(), message, None, r)?;
            Some(w)
        });
        Some(Condition::Stale {
            metric: metric?,
            after: after?,
        })
    }

    /// `ewma`: a metric's z-score against its exponentially weighted mean.
    fn ewma(&mut self, Leaf { t, r, metric, .. }: Leaf<'_, '_, '_, '_>) -> Option<Condition> {
        let halflife = self.positive(t.require("halflife", r), "halflife (samples)", r);
        let warmup = self.warmup(t.require("warmup", r), "warmup", r);
        let z = self.positive(t.require("z", r), "z", r);
        let direction = direction(t, r);
        let halflife = halflife?;
        let params = EwmaParams {
            alpha: 1.0 - 0.5f64.powf(1.0 / halflife),
            halflife,
            warmup: warmup?,
            z: z?,
            direction: direction?,
        };
        Some(Condition::Ewma {
            metric: metric?,
            params,
        })
    }

    /// `cusum`: a one-sided cumulative sum of a metric's deviations.
    fn cusum(&mut self, Leaf { t, r, metric, .. }: Leaf<'_, '_, '_, '_>) -> Option<Condition> {
        let warmup = self.warmup(t.require("warmup", r), "warmup", r);
        let slack = t.require("slack", r).and_then(|v| {
            let s = as_number(v, "slack", r)?;
            check(s >= 0.0, &v.span(), "slack must be at least 0", None, r)?;
            Some(s)
        });
        let threshold = self.positive(t.require("threshold", r), "threshold", r);
        let direction = t.require("direction", r).and_then(|v| {
            let d = as_choice(v, "direction", &Direction::CHOICES, r)?;
            let message = "cusum is one-sided: use `up` or `down`";
            let hint = "for both directions, write two conditions under `any`";
            check(
                d != Direction::Either,
                &v.span(),
                message,
                Some(hint.into()),
                r,
            )?;
            Some(d)
        });
        Some(Condition::Cusum {
            metric: metric?,
            params: CusumParams {
                warmup: warmup?,
                slack: slack?,
                threshold: threshold?,
                direction: direction?,
            },
        })
    }
}

/// What a leaf condition is read from: its table, where it stands (for
/// messages), where its problems go, and the metric it watches.
struct Leaf<'x, 'a, 'b, 'c> {
    ctx: &'x str,
    t: &'x mut TableReader<'a, 'b>,
    r: &'x mut Reporter<'c>,
    /// The `metric` it watches, read already.
    metric: Option<MetricId>,
}

/// Reports `message` (with `hint`) at `span` unless `ok`; `None` when it did.
fn check(
    ok: bool,
    span: &Range<usize>,
    message: impl Into<String>,
    hint: Option<String>,
    r: &mut Reporter<'_>,
) -> Option<()> {
    if !ok {
        r.error(span, message, hint);
        return None;
    }
    Some(())
}

/// A value in units, or its unit error reported at `value` as `what: message`.
fn in_units<T>(
    parsed: Result<T, units::UnitError>,
    value: &Value<'_>,
    what: &str,
    r: &mut Reporter<'_>,
) -> Option<T> {
    parsed
        .map_err(|e| {
            r.error(
                &value.span(),
                format!("{what}: {}", e.message),
                Some(e.hint),
            )
        })
        .ok()
}

/// An optional field as read: absent is `Some(None)`; present but wrong
/// (already reported) is `None`.
fn optional<T>(read: Option<Option<T>>) -> Option<Option<T>> {
    match read {
        Some(None) => None,
        Some(v) => Some(v),
        None => Some(None),
    }
}

fn is_zero(w: Window) -> bool {
    matches!(w, Window::Blocks(0) | Window::Millis(0))
}

/// The hint for a `name` not among the `known` names the configuration
/// defines under `section`: the nearest one, else all of them.
fn unknown_hint(name: &str, known: &[&str], section: &str, listed: &str) -> String {
    match did_you_mean(name, known.iter().copied()) {
        Some(k) => format!("did you mean `{k}`?"),
        None if known.is_empty() => format!("the configuration defines no {section}"),
        None => format!("{listed}: {}", known.join(", ")),
    }
}

/// A condition's `op`.
fn comparison(t: &mut TableReader<'_, '_>, r: &mut Reporter<'_>) -> Option<Comparison> {
    t.require("op", r)
        .and_then(|v| as_choice(v, "comparison", &Comparison::CHOICES, r))
}

/// A condition's `direction`.
fn direction(t: &mut TableReader<'_, '_>, r: &mut Reporter<'_>) -> Option<Direction> {
    t.require("direction", r)
        .and_then(|v| as_choice(v, "direction", &Direction::CHOICES, r))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(text: &str) -> Result<PolicySet, Diagnostics> {
        compile_str("p.toml", text, &Config::empty())
    }

    /// The configuration `text` declares.
    fn config(text: &str) -> Config {
        Config::from_text("guardian.toml", text.into()).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn every_condition_kind_compiles() {
        let set = compile(
            r#"
[[policy]]
id = "everything"
description = "one of each"
severity = "critical"
action = "pause"
cooldown = "10 blocks"
[policy.when]
kind = "any"
of = [
  { kind = "threshold", metric = "a", op = ">=", value = 5 },
  { kind = "change", metric = "a", window = "5 blocks", direction = "down", by = "10%" },
  { kind = "rate", metric = "a", window = "90s", per = "second", direction = "up", above = 2.5 },
  { kind = "sum", metric = "out", window = "1h", op = ">", value = "10%", relative_to = "a" },
  { kind = "deviation", metric = "p1", reference = "p2", above = "150bps", max_skew = "2 blocks" },
  { kind = "stale", metric = "p1", after = "20 blocks" },
  { kind = "ewma", metric = "g", halflife = 50, warmup = 100, z = 6, direction = "up", for = "2 samples" },
  { kind = "cusum", metric = "g", warmup = 100, slack = 0.5, threshold = 8, direction = "up" },
  { kind = "at_least", count = 2, of = [
      { kind = "threshold", metric = "a", op = "<", value = 1 },
      { kind = "threshold", metric = "b", op = "<=", value = 1 },
  ] },
]
"#,
        )
        .unwrap();
        assert_eq!(set.policies.len(), 1);
        assert_eq!(set.nodes.len(), 12);
        assert_eq!(set.metric_names, ["a", "out", "p1", "p2", "g", "b"]);
        let root = set.node(set.policies[0].root);
        assert!(
            matches!(root.condition, Condition::Composite { quorum: Quorum::Any, ref children } if children.len() == 9)
        );
    }

    #[test]
    fn notify_names_channels_of_the_configuration() {
        let config = config(
            "[guardian]\nmode = \"alert-only\"\n[metrics.a]\ndescription = \"a\"\n[actions.pause]\nkind = \"pause\"\ndescription = \"p\"\n[notify.ops]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/hook\"\n[notify.pager]\nkind = \"pagerduty\"\nrouting_key_env = \"PD\"\n",
        );
        let policy = |notify: &str| {
            format!(
                "[[policy]]\nid = \"p\"\ndescription = \"x\"\nseverity = \"info\"\naction = \"pause\"\ncooldown = \"1m\"\n{notify}\n[policy.when]\nkind = \"threshold\"\nmetric = \"a\"\nop = \">\"\nvalue = 1\n"
            )
        };
        let set = compile_str("p.toml", &policy("notify = [\"ops\", \"pager\"]"), &config).unwrap();
        assert_eq!(
            set.policies[0].notify,
            Some(vec!["ops".to_string(), "pager".to_string()])
        );
        let set = compile_str("p.toml", &policy(""), &config).unwrap();
        assert_eq!(set.policies[0].notify, None, "no list: every channel");
        let err = compile_str("p.toml", &policy("notify = [\"opps\", 3]"), &config).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("p.toml:7:11: policy `p`: unknown notify channel `opps`\n    hint: did you mean `ops`?"),
            "{text}"
        );
        assert!(
            text.contains("p.toml:7:19: policy `p`: a notify channel must be a string"),
            "{text}"
        );
    }

    #[test]
    fn every_error_is_reported_with_its_location() {
        let err = compile(
            r#"
[[policy]]
id = "bad"
description = "many mistakes"
severity = "urgent"
action = "pause"
cooldown = "10"
[policy.when]
kind = "change"
metric = "a"
window = "5 parsecs"
direction = "down"
by = "ten"
treshold = 4

[[policy]]
id = "bad"
description = "duplicate id and a fraction"
severity = "info"
action = "pause"
cooldown = "1m"
[policy.when]
kind = "deviation"
metric = "a"
reference = "b"
above = 0.05

[[policy]]
id = "ok-but-wrong-kind"
description = "x"
severity = "info"
action = "pause"
cooldown = "1m"
[policy.when]
kind = "treshold"
"#,
        )
        .unwrap_err();
        let text = err.to_string();
        for needle in [
            "p.toml:5:12: `urgent` is not a valid severity",
            "p.toml:7:12: policy `bad`: cooldown: `10` has no unit",
            "p.toml:11:10: policy `bad`.when: window: `parsecs` is not a unit of time",
            "p.toml:13:6: policy `bad`.when: by: `ten` is not a percent",
            "p.toml:14:1: unknown field `treshold`",
            "p.toml:17:6: duplicate policy id `bad`",
            "expected a percent, found the bare number 0.05",
            "`treshold` is not a condition kind",
            "did you mean `threshold`?",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
    }

    #[test]
    fn thresholds_that_always_hold_and_cusum_hysteresis_are_refused() {
        let when = |w: &str| {
            format!(
                "[[policy]]\nid = \"p\"\ndescription = \"x\"\nseverity = \"info\"\naction = \"a\"\ncooldown = \"1m\"\n[policy.when]\n{w}\n"
            )
        };
        for (w, needle) in [
            (
                "kind = \"change\"\nmetric = \"m\"\nwindow = \"5 blocks\"\ndirection = \"down\"\nby = \"0%\"",
                "by must be greater than zero",
            ),
            (
                "kind = \"change\"\nmetric = \"m\"\nwindow = \"5 blocks\"\ndirection = \"down\"\nby = -5",
                "by must be greater than zero",
            ),
            (
                "kind = \"rate\"\nmetric = \"m\"\nwindow = \"5 blocks\"\nper = \"block\"\ndirection = \"up\"\nabove = 0",
                "above must be greater than zero",
            ),
            (
                "kind = \"deviation\"\nmetric = \"m\"\nreference = \"n\"\nabove = \"-1%\"",
                "above must be greater than 0%",
            ),
            (
                "kind = \"stale\"\nmetric = \"m\"\nafter = \"0 blocks\"",
                "after must be longer than zero",
            ),
            (
                "kind = \"cusum\"\nmetric = \"m\"\nwarmup = 10\nslack = 0.5\nthreshold = 5\ndirection = \"up\"\nfor = \"2 samples\"",
                "`for` cannot be used with cusum",
            ),
        ] {
            let err = compile(&when(w)).unwrap_err().to_string();
            assert!(err.contains(needle), "{w}: {err}");
        }
    }

    #[test]
    fn windows_longer_than_history_are_refused() {
        let mut config = Config::empty();
        config.history_blocks = 100;
        let err = compile_str(
            "p.toml",
            r#"
[[policy]]
id = "long"
description = "x"
severity = "info"
action = "pause"
cooldown = "1m"
[policy.when]
kind = "sum"
metric = "a"
window = "500 blocks"
op = ">"
value = 1
"#,
            &config,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("longer than the history kept (100 blocks)"),
            "{err}"
        );
    }

    /// Every refusal of the policy reader, rendered whole: pinned so that
    /// reshaping the reader keeps each message and hint byte for byte.
    #[test]
    fn every_refusal_reads_the_same() {
        let declared = config(
            "[guardian]\nmode = \"alert-only\"\n[metrics.a]\ndescription = \"a\"\n[metrics.\"lend.cash\"]\ndescription = \"c\"\n[bind]\n\"b\" = \"zz\"\n[actions.pause]\nkind = \"pause\"\ndescription = \"p\"\n[notify.ops]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/hook\"\n",
        );
        let bare = config("[guardian]\nmode = \"alert-only\"\n[metrics.a]\ndescription = \"a\"\n");
        let mut empty = Config::empty();
        empty.history_blocks = 100;
        empty.bind.insert("x.*".into(), "y".into());
        let policy = |id: &str, action: &str, extra: &str, when: &str| {
            format!(
                "[[policy]]\nid = \"{id}\"\ndescription = \"x\"\nseverity = \"info\"\naction = \"{action}\"\ncooldown = \"1m\"\n{extra}\nwhen = {when}\n"
            )
        };
        let t = r#"{ kind = "threshold", metric = "a", op = ">", value = 1 }"#;
        let cases: Vec<(String, &Config)> = vec![
            (policy("bad id!", "pause", "", t), &empty),
            (
                policy("p", "paus", "notify = [\"opps\", \"zzz\"]", t),
                &declared,
            ),
            (policy("p", "pause", "notify = [\"ops\"]", t), &bare),
            (
                policy(
                    "p",
                    "zzz",
                    "",
                    r#"{ kind = "threshold", metric = "lend.cahs", op = ">", value = 1 }"#,
                ),
                &declared,
            ),
            (
                policy(
                    "p",
                    "pause",
                    "",
                    r#"{ kind = "threshold", metric = "b", op = ">", value = 1 }"#,
                ),
                &declared,
            ),
            (
                policy(
                    "p",
                    "pause",
                    "",
                    r#"{ kind = "threshold", metric = "bad name!", op = ">", value = "ten" }"#,
                ),
                &empty,
            ),
            (
                policy(
                    "p",
                    "pause",
                    "",
                    r#"{ kind = "threshold", metric = "lend.*.*", op = ">", value = 1 }"#,
                ),
                &empty,
            ),
            (
                policy(
                    "p",
                    "pause",
                    "",
                    r#"{ kind = "threshold", metric = "x.*", op = ">", value = 1 }"#,
                ),
                &empty,
            ),
            (
                policy(
                    "p",
                    "pause",
                    "",
                    r#"{ kind = "threshold", metric = "a", op = ">", value = 1, within = "5 blocks", for = "2 parsecs" }"#,
                ),
                &empty,
            ),
            (
                policy(
                    "p",
                    "pause",
                    "",
                    r#"{ kind = "at_least", count = 0, within = "x", of = [] }"#,
                ),
                &empty,
            ),
            (
                policy(
                    "p",
                    "pause",
                    "",
                    r#"{ kind = "at_least", count = 3, of = [{ kind = "zzz" }, { kind = "treshold" }] }"#,
                ),
                &empty,
            ),
            (
                policy(
                    "p",
                    "pause",
                    "",
                    r#"{ kind = "change", metric = "a", window = "0 blocks", direction = "sideways", by = "0%" }"#,
                ),
                &empty,
            ),
            (
                policy(
                    "p",
                    "pause",
                    "",
                    r#"{ kind = "change", metric = "a", window = "500 blocks", direction = "up", by = -1 }"#,
                ),
                &empty,
            ),
            (
                policy(
                    "p",
                    "pause",
                    "",
                    r#"{ kind = "rate", metric = "a", window = "5 blocks", per = "week", direction = "up", above = 0 }"#,
                ),
                &empty,
            ),
            (
                policy(
                    "p",
                    "pause",
                    "",
                    r#"{ kind = "sum", metric = "a", window = "5 blocks", op = "~", value = "5%" }"#,
                ),
                &empty,
            ),
            (
                policy(
                    "p",
                    "pause",
                    "",
                    r#"{ kind = "sum", metric = "a", window = "5 blocks", op = ">", value = 0.1, relative_to = "bad name!" }"#,
                ),
                &empty,
            ),
            (
                policy(
                    "p",
                    "pause",
                    "",
                    r#"{ kind = "deviation", metric = "a", reference = "b", above = "0%", max_skew = "x" }"#,
                ),
                &empty,
            ),
            (
                policy(
                    "p",
                    "pause",
                    "",
                    r#"{ kind = "deviation", metric = "a", reference = "b", above = 0.05 }"#,
                ),
                &empty,
            ),
            (
                policy(
                    "p",
                    "pause",
                    "",
                    r#"{ kind = "stale", metric = "a", after = "0 blocks" }"#,
                ),
                &empty,
            ),
            (
                policy(
                    "p",
                    "pause",
                    "",
                    r#"{ kind = "ewma", metric = "a", halflife = 0, warmup = 1, z = -1, direction = "up" }"#,
                ),
                &empty,
            ),
            (
                policy(
                    "p",
                    "pause",
                    "",
                    r#"{ kind = "cusum", metric = "a", warmup = 1, slack = -1, threshold = 0, direction = "either", for = "2 samples" }"#,
                ),
                &empty,
            ),
        ];
        let mut text = String::new();
        for (file, config) in cases {
            let err = compile_str("p.toml", &file, config).unwrap_err();
            text.push_str(&format!("{file}---\n{err}\n\n"));
        }
        if std::env::var_os("GUARDIAN_BLESS").is_some() {
            std::fs::write("tests/golden/policy-refusals.txt", &text).unwrap();
        }
        assert_eq!(text, include_str!("../../tests/golden/policy-refusals.txt"));
    }
}
