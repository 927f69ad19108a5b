//! `kubectl get svc,endpointslices -A -o yaml|json` output to a [`Cluster`].

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use kpinspect_core::model::{
    AddressType, Cluster, Endpoint, EndpointPort, EndpointSlice, IpMode, LoadBalancerIngress,
    Protocol, Service, ServicePort, ServiceType, TrafficPolicy,
};
use kpinspect_core::net::{IpFamily, parse_cidr_sloppy, parse_ip_sloppy};
use serde_json::Value;

use crate::error::{Ctx, LoadError, Warning};

/// The label linking an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Objects with this label belong to another service proxy; kube-proxy ignores them.
pub const SERVICE_PROXY_NAME_LABEL: &str = "service.kubernetes.io/service-proxy-name";
/// Objects with this label are headless; kube-proxy ignores them.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
/// Legacy Endpoints with this label are not mirrored to EndpointSlices.
pub const SKIP_MIRROR_LABEL: &str = "endpointslice.kubernetes.io/skip-mirror";

/// Objects read from input files, plus what was skipped on the way.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// The objects.
    pub cluster: Cluster,
    /// Legacy `v1 Endpoints`, converted later (they only count for Services
    /// without EndpointSlices; see [`Loaded::finish`]).
    pub legacy_endpoints: Vec<EndpointSlice>,
    /// What kube-proxy would skip, and kpinspect skipped.
    pub warnings: Vec<Warning>,
    /// Objects of kinds kube-proxy does not read (`kubectl get all` has
    /// Pods, Deployments, ...), counted per kind, for one warning per file.
    skipped_kinds: std::collections::BTreeMap<String, usize>,
    /// Where each Service and EndpointSlice was read (`FILE: document N`),
    /// by kind and `namespace/name`, to refuse a second definition.
    origins: std::collections::HashMap<(&'static str, String), String>,
}

impl Loaded {
    /// Adds the objects of another file.
    pub fn extend(&mut self, other: Loaded) {
        self.cluster.extend(other.cluster);
        self.legacy_endpoints.extend(other.legacy_endpoints);
        self.warnings.extend(other.warnings);
        for (key, origin) in other.origins {
            self.origins.entry(key).or_insert(origin);
        }
    }

    /// Adds the objects of another file, refusing a Service or an
    /// EndpointSlice that an earlier file already defined (the API server
    /// holds one object per kind, namespace and name; two definitions are
    /// two snapshots mixed up, and which one kube-proxy saw is unknown).
    ///
    /// ```
    /// let svc = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\n\
    ///            spec: {clusterIP: 10.96.0.10, ports: [{port: 80}]}\n";
    /// let mut loaded = kpinspect_k8s::load_objects(svc, "a.yaml").unwrap();
    /// let err = loaded
    ///     .try_extend(kpinspect_k8s::load_objects(svc, "b.yaml").unwrap())
    ///     .unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     "b.yaml: document 1: Service default/web: defined twice (first in a.yaml: document 1)"
    /// );
    /// ```
    pub fn try_extend(&mut self, other: Loaded) -> Result<(), LoadError> {
        for (key, origin) in &other.origins {
            if let Some(first) = self.origins.get(key) {
                let (file, where_) = origin.split_once(": ").unwrap_or((origin, ""));
                return Err(LoadError {
                    file: file.to_string(),
                    object: Some(format!("{where_}: {} {}", key.0, key.1)),
                    field: None,
                    message: format!("defined twice (first in {first})"),
                });
            }
        }
        self.extend(other);
        Ok(())
    }

    /// Records where the object `kind` `key` was read; a second definition
    /// is an error naming the first.
    fn record(
        &mut self,
        kind: &'static str,
        key: String,
        ctx: &Ctx<'_>,
        where_: &str,
    ) -> Result<(), LoadError> {
        use std::collections::hash_map::Entry;
        match self.origins.entry((kind, key)) {
            Entry::Occupied(first) => Err(ctx.error(
                "metadata.name",
                format!("defined twice (first in {})", first.get()),
            )),
            Entry::Vacant(slot) => {
                slot.insert(format!("{}: {where_}", ctx.file));
                Ok(())
            }
        }
    }

    /// Resolves legacy Endpoints: the EndpointSlice mirroring controller
    /// mirrors them only for Services without a selector, and a Service
    /// that already has EndpointSlices uses those. Returns the cluster.
    pub fn finish(mut self) -> (Cluster, Vec<Warning>) {
        for slice in std::mem::take(&mut self.legacy_endpoints) {
            let has_slices = self.cluster.endpoint_slices.iter().any(|s| {
                s.namespace == slice.namespace
                    && s.service_name == slice.service_name
                    && !s.name.starts_with("endpoints/")
            });
            if has_slices {
                continue;
            }
            self.cluster.endpoint_slices.push(slice);
        }
        (self.cluster, self.warnings)
    }
}

/// Reads one input file: YAML (one or many documents) or JSON; objects of
/// kind `Service`, `EndpointSlice`, `Endpoints`, and lists of them.
///
/// ```
/// let text = r#"
/// apiVersion: v1
/// kind: Service
/// metadata: {name: web, namespace: default}
/// spec:
///   clusterIP: 10.96.0.10
///   ports: [{name: http, port: 80, protocol: TCP}]
/// ---
/// apiVersion: discovery.k8s.io/v1
/// kind: EndpointSlice
/// metadata:
///   name: web-abcde
///   namespace: default
///   labels: {kubernetes.io/service-name: web}
/// addressType: IPv4
/// endpoints: [{addresses: [10.244.0.5]}]
/// ports: [{name: http, port: 8000, protocol: TCP}]
/// "#;
/// let loaded = kpinspect_k8s::load_objects(text, "web.yaml").unwrap();
/// let (cluster, warnings) = loaded.finish();
/// assert_eq!(cluster.services[0].key(), "default/web");
/// assert_eq!(cluster.endpoint_slices[0].endpoints.len(), 1);
/// assert!(warnings.is_empty());
/// ```
pub fn load_objects(text: &str, file: &str) -> Result<Loaded, LoadError> {
    let mut loaded = Loaded::default();
    if looks_like_json(text) {
        // JSON is decoded straight from the text into the typed objects,
        // one object at a time (see `load_json`); YAML goes through values.
        load_json(text, file, &mut loaded)?;
    } else {
        let docs = parse_documents(text, file)?;
        for (i, doc) in docs.into_iter().enumerate() {
            if doc.is_null() {
                continue;
            }
            load_value(doc, file, &format!("document {}", i + 1), &mut loaded)?;
        }
    }
    summarise_skipped(&mut loaded, file);
    Ok(loaded)
}

/// One warning per file for the objects of kinds kube-proxy does not read.
fn summarise_skipped(loaded: &mut Loaded, file: &str) {
    let skipped = std::mem::take(&mut loaded.skipped_kinds);
    if !skipped.is_empty() {
        let total: usize = skipped.values().sum();
        let kinds: Vec<String> = skipped.iter().map(|(k, n)| format!("{n} {k}")).collect();
        loaded.warnings.push(Warning {
            file: file.to_string(),
            object: None,
            field: None,
            message: format!(
                "skipped {total} object{} kube-proxy does not read: {}",
                if total == 1 { "" } else { "s" },
                kinds.join(", ")
            ),
        });
    }
}

/// Parses YAML or JSON text into documents.
pub(crate) fn parse_documents(text: &str, file: &str) -> Result<Vec<Value>, LoadError> {
    let trimmed = text.trim_start();
    let err = |message: String| LoadError {
        file: file.to_string(),
        object: None,
        field: None,
        message,
    };
    if looks_like_json(trimmed) {
        // JSON: one value, or several concatenated (as `kubectl get -o json` of
        // several resources never does, but `cat a.json b.json` might).
        let mut out = Vec::new();
        for v in serde_json::Deserializer::from_str(text).into_iter::<Value>() {
            out.push(v.map_err(|e| err(format!("invalid JSON: {e}")))?);
        }
        return Ok(out);
    }
    // YAML 1.2 booleans only: `namespace: n` or a port named `on` is a
    // string, as it is for kubectl (which converts by target type).
    // The parser's default budget (1,024 documents, 250,000 nodes) is for
    // configuration files; kubectl output of a large cluster is bigger. The
    // limits grow with the input (a node or an event needs at least a byte
    // of it). What aliases replay does not grow with the input: kubectl
    // writes no aliases, and an expansion bomb must stop at a fixed size
    // (the default, a million events, held about 85 MB of values when the
    // node limit stopped it; 100,000 is still ten thousand 10-event
    // `ports: *common` in a hand-written file).
    let budget = serde_saphyr::budget! {
        max_documents: text.len() / 3 + 1_024,
        max_nodes: text.len() + 250_000,
        max_events: 2 * text.len() + 1_000_000,
    };
    let alias_limits = serde_saphyr::alias_limits! { max_total_replayed_events: 100_000 };
    let options = serde_saphyr::options! {
        strict_booleans: true,
        budget: budget,
        alias_limits: alias_limits,
    };
    serde_saphyr::from_multiple_with_options::<Value>(text, options).map_err(|e| {
        // The parser's message ends in a multi-line snippet: keep the first line.
        let msg = e.to_string();
        err(format!(
            "invalid YAML: {}",
            msg.lines().next().unwrap_or_default().trim()
        ))
    })
}

/// JSON starts with `{` or `[`; anything else is YAML.
fn looks_like_json(text: &str) -> bool {
    let trimmed = text.trim_start();
    trimmed.starts_with('{') || trimmed.starts_with('[')
}

/// What an object's envelope says, read from its text without decoding
/// the rest (`items` is kept as text).
#[derive(serde::Deserialize)]
struct Envelope<'a> {
    kind: Option<Value>,
    #[serde(rename = "apiVersion")]
    api_version: Option<Value>,
    metadata: Option<EnvelopeMeta>,
    /// A list's items, each kept as text (read in the same pass as the
    /// envelope; anything but an array or `null` sends the list to the
    /// value path).
    #[serde(borrow)]
    items: Option<Vec<&'a serde_json::value::RawValue>>,
}

#[derive(serde::Deserialize)]
struct EnvelopeMeta {
    name: Option<Value>,
    namespace: Option<Value>,
}

/// JSON input, in one pass over the text when it is laid out as kubectl
/// writes it (see [`load_json_stream`]); anything that pass does not take
/// — an error of any kind included — is read again from scratch by
/// [`load_json_checked`], the way JSON has always been read, so results
/// and error messages are exactly that path's.
fn load_json(text: &str, file: &str, out: &mut Loaded) -> Result<(), LoadError> {
    let mut fast = Loaded::default();
    if load_json_stream(text, file, &mut fast).is_some() {
        *out = fast;
        return Ok(());
    }
    load_json_checked(text, file, out)
}

/// JSON input, checked first: the whole text's syntax, then each top-level
/// value and each list item kept as text, its envelope read, and a
/// Service, EndpointSlice or Endpoints decoded from its text straight into
/// the k8s-openapi type — no `serde_json::Value` of the whole input, no
/// copies of it. Whenever this path meets something it does not take (an
/// error, a duplicate key, ...) the object is decoded again the slow way,
/// through a `Value`, so that errors and edge cases are exactly those of
/// [`load_value`].
fn load_json_checked(text: &str, file: &str, out: &mut Loaded) -> Result<(), LoadError> {
    // The whole text is checked first, as the value parser did: a syntax
    // error anywhere comes before any object's error.
    let docs: Result<Vec<&serde_json::value::RawValue>, _> =
        serde_json::Deserializer::from_str(text)
            .into_iter()
            .collect();
    let Ok(docs) = docs else {
        // Let the value parser report it, as it always has.
        parse_documents(text, file)?;
        return Err(LoadError {
            file: file.to_string(),
            object: None,
            field: None,
            message: "invalid JSON".to_string(),
        });
    };
    for (i, raw) in docs.into_iter().enumerate() {
        if raw.get() == "null" {
            continue;
        }
        load_raw(raw.get(), file, &format!("document {}", i + 1), out)?;
    }
    Ok(())
}

/// JSON whitespace.
fn skip_ws(text: &str, mut pos: usize) -> usize {
    let bytes = text.as_bytes();
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = bytes.get(pos) {
        pos += 1;
    }
    pos
}

/// The first JSON value of `text` (which may go on after it), decoded as a
/// `T`, and where it ends; `None` if it does not decode.
fn next_value<'a, T: serde::Deserialize<'a>>(text: &'a str) -> Option<(T, usize)> {
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<T>();
    let value = stream.next()?.ok()?;
    Some((value, stream.byte_offset()))
}

/// A member's key without escapes or control characters, and where it ends.
fn plain_key(text: &str, pos: usize) -> Option<(&str, usize)> {
    let rest = text.get(pos..)?.strip_prefix('"')?;
    let end = rest.find('"')?;
    let key = &rest[..end];
    if key.bytes().any(|b| b == b'\\' || b < 0x20) {
        return None;
    }
    Some((key, pos + end + 2))
}

/// JSON input in one pass, for texts that are top-level objects: a list
/// (members in any order, as kubectl sorts them) has its items decoded
/// where they stand in the text — a Service, EndpointSlice or Endpoints
/// whose kind is among its first members straight into its type, anything
/// else through [`load_raw`] — and every other member and the text between
/// them are checked as JSON. `None` when the text is anything else, or on
/// any error, duplicate key or doubt: the caller then reads the text again
/// with [`load_json_checked`] (`out` is the caller's scratch). What this
/// takes, it reads as that path does; whole-document syntax errors come
/// first there, so this never reports an error itself.
fn load_json_stream(text: &str, file: &str, out: &mut Loaded) -> Option<()> {
    let mut pos = skip_ws(text, 0);
    let mut doc = 0;
    while pos < text.len() {
        doc += 1;
        let where_ = format!("document {doc}");
        if !text[pos..].starts_with('{') {
            return None;
        }
        let start = pos;
        let kind = sniff_kind(&text[pos..]);
        if kind.is_some_and(|k| !is_list_kind(k)) {
            let (raw, len) = next_value::<&serde_json::value::RawValue>(&text[pos..])?;
            load_raw(raw.get(), file, &where_, out).ok()?;
            pos = skip_ws(text, pos + len);
            continue;
        }
        // An object of unknown kind, or a list: its members one by one.
        pos += 1;
        let mut seen: Vec<&str> = Vec::new();
        let mut kind: Option<String> = None;
        let mut items_seen = false;
        let mut items_null = false;
        pos = skip_ws(text, pos);
        if text[pos..].starts_with('}') {
            return None;
        }
        loop {
            let (key, after) = plain_key(text, pos)?;
            if seen.contains(&key) {
                return None;
            }
            seen.push(key);
            pos = skip_ws(text, after);
            if !text[pos..].starts_with(':') {
                return None;
            }
            pos = skip_ws(text, pos + 1);
            if key == "items" && text[pos..].starts_with('[') {
                items_seen = true;
                pos = load_items(text, pos + 1, file, &where_, out)?;
            } else {
                let (raw, len) = next_value::<&serde_json::value::RawValue>(&text[pos..])?;
                match key {
                    "kind" => kind = Some(serde_json::from_str::<String>(raw.get()).ok()?),
                    "items" => {
                        items_seen = true;
                        items_null = raw.get() == "null";
                        if !items_null {
                            return None;
                        }
                    }
                    _ => {}
                }
                pos += len;
            }
            pos = skip_ws(text, pos);
            match text.as_bytes().get(pos) {
                Some(b',') => pos = skip_ws(text, pos + 1),
                Some(b'}') => break,
                _ => return None,
            }
        }
        pos += 1;
        match kind.as_deref() {
            Some(k) if is_list_kind(k) => {}
            // Not a list: read as one object, unless items were taken.
            _ if items_seen && !items_null => return None,
            _ => load_raw(&text[start..pos], file, &where_, out).ok()?,
        }
        pos = skip_ws(text, pos);
    }
    Some(())
}

/// A list's items from just after its `[`, each decoded where it stands
/// (see [`load_json_stream`]); where the array ends.
fn load_items(
    text: &str,
    mut pos: usize,
    file: &str,
    where_: &str,
    out: &mut Loaded,
) -> Option<usize> {
    pos = skip_ws(text, pos);
    if text[pos..].starts_with(']') {
        return Some(pos + 1);
    }
    for i in 0.. {
        let item_where = format!("{where_} items[{i}]");
        let rest = &text[pos..];
        let len = match sniff_kind(rest) {
            Some("Service") => {
                let (svc, len) = next_value::<core::Service>(rest)?;
                take_typed(Typed::Service(svc), file, &item_where, out).ok()?;
                len
            }
            Some("EndpointSlice") => {
                let (slice, len) = next_value::<discovery::EndpointSlice>(rest)?;
                take_typed(Typed::EndpointSlice(slice), file, &item_where, out).ok()?;
                len
            }
            Some("Endpoints") => {
                let (eps, len) = next_value::<core::Endpoints>(rest)?;
                take_typed(Typed::Endpoints(eps), file, &item_where, out).ok()?;
                len
            }
            _ => {
                let (raw, len) = next_value::<&serde_json::value::RawValue>(rest)?;
                load_raw(raw.get(), file, &item_where, out).ok()?;
                len
            }
        };
        pos = skip_ws(text, pos + len);
        match text.as_bytes().get(pos) {
            Some(b',') => pos = skip_ws(text, pos + 1),
            Some(b']') => return Some(pos + 1),
            _ => return None,
        }
    }
    None
}

fn is_list_kind(kind: &str) -> bool {
    matches!(
        kind,
        "List" | "ServiceList" | "EndpointSliceList" | "EndpointsList"
    )
}

fn value_str(v: &Option<Value>) -> Option<&str> {
    v.as_ref().and_then(Value::as_str)
}

/// One JSON object (or list) given as its text; see [`load_json`].
fn load_raw(raw: &str, file: &str, where_: &str, out: &mut Loaded) -> Result<(), LoadError> {
    let slow = |out: &mut Loaded| -> Result<(), LoadError> {
        let v: Value = serde_json::from_str(raw).map_err(|e| LoadError {
            file: file.to_string(),
            object: None,
            field: None,
            message: format!("invalid JSON: {e}"),
        })?;
        load_value(v, file, where_, out)
    };
    if !raw.starts_with('{') {
        return slow(out);
    }
    // kubectl writes `apiVersion` and `kind` first: then the object is
    // decoded once, straight into its type (which refuses another kind or
    // API version), and named from the decoded metadata.
    if let Some(kind) = sniff_kind(raw)
        && load_typed(raw, kind, file, where_, out)?
    {
        return Ok(());
    }
    let Ok(env) = serde_json::from_str::<Envelope<'_>>(raw) else {
        return slow(out);
    };
    let Some(kind) = value_str(&env.kind) else {
        return slow(out);
    };
    let api_version = value_str(&env.api_version).unwrap_or("");
    let name = env.metadata.as_ref().and_then(|m| value_str(&m.name));
    let ns = env.metadata.as_ref().and_then(|m| value_str(&m.namespace));
    let ctx = Ctx {
        file,
        object: object_name(kind, ns, name, where_),
    };
    let want = match kind {
        "List" | "ServiceList" | "EndpointSliceList" | "EndpointsList" => {
            for (i, item) in env.items.into_iter().flatten().enumerate() {
                load_raw(item.get(), file, &format!("{where_} items[{i}]"), out)?;
            }
            return Ok(());
        }
        "Service" | "Endpoints" => "v1",
        "EndpointSlice" => "discovery.k8s.io/v1",
        _ => return slow(out),
    };
    if !api_version.is_empty() && api_version != want {
        return slow(out);
    }
    match kind {
        "Service" => {
            let Ok(svc) = serde_json::from_str::<core::Service>(raw) else {
                return slow(out);
            };
            if let Some(svc) = convert_service(svc, &ctx, &mut out.warnings)? {
                out.record("Service", svc.key(), &ctx, where_)?;
                out.cluster.services.push(svc);
            }
        }
        "EndpointSlice" => {
            let Ok(slice) = serde_json::from_str::<discovery::EndpointSlice>(raw) else {
                return slow(out);
            };
            if let Some(slice) = convert_slice(slice, &ctx, &mut out.warnings)? {
                let key = format!("{}/{}", slice.namespace, slice.name);
                out.record("EndpointSlice", key, &ctx, where_)?;
                out.cluster.endpoint_slices.push(slice);
            }
        }
        _ => {
            let Ok(eps) = serde_json::from_str::<core::Endpoints>(raw) else {
                return slow(out);
            };
            for slice in convert_endpoints(eps, &ctx, &mut out.warnings)? {
                out.legacy_endpoints.push(slice);
            }
        }
    }
    Ok(())
}

/// How errors and warnings name an object: `KIND NS/NAME`, `KIND NAME`,
/// or `KIND in WHERE` (the document or list item).
fn object_name(kind: &str, ns: Option<&str>, name: Option<&str>, where_: &str) -> String {
    match (ns, name) {
        (Some(ns), Some(name)) => format!("{kind} {ns}/{name}"),
        (None, Some(name)) => format!("{kind} {name}"),
        _ => format!("{kind} in {where_}"),
    }
}

/// The `kind` of an object whose text starts with members whose keys and
/// values are plain strings (no escapes), `kind` among the first four —
/// as kubectl writes objects. `None` when the text does not start so
/// (the envelope decides then).
fn sniff_kind(raw: &str) -> Option<&str> {
    fn plain_string(s: &str) -> Option<(&str, &str)> {
        let s = s.strip_prefix('"')?;
        let end = s.find('"')?;
        let v = &s[..end];
        if v.contains('\\') {
            return None;
        }
        Some((v, &s[end + 1..]))
    }
    let mut rest = raw.strip_prefix('{')?;
    for _ in 0..4 {
        let (key, r) = plain_string(rest.trim_start())?;
        let r = r.trim_start().strip_prefix(':')?;
        let (value, r) = plain_string(r.trim_start())?;
        if key == "kind" {
            return Some(value);
        }
        rest = r.trim_start().strip_prefix(',')?;
    }
    None
}

/// A Service, EndpointSlice or Endpoints decoded into its k8s-openapi type.
#[expect(
    clippy::large_enum_variant,
    reason = "one short-lived value per object, moved once into its conversion"
)]
enum Typed {
    Service(core::Service),
    EndpointSlice(discovery::EndpointSlice),
    Endpoints(core::Endpoints),
}

/// Decodes a Service, EndpointSlice or Endpoints whose kind was sniffed
/// straight into its type; `Ok(false)` when it is another kind or the
/// decoding fails (the caller then takes the envelope's way, and its
/// errors).
fn load_typed(
    raw: &str,
    kind: &str,
    file: &str,
    where_: &str,
    out: &mut Loaded,
) -> Result<bool, LoadError> {
    let typed = match kind {
        "Service" => serde_json::from_str(raw).map(Typed::Service),
        "EndpointSlice" => serde_json::from_str(raw).map(Typed::EndpointSlice),
        "Endpoints" => serde_json::from_str(raw).map(Typed::Endpoints),
        _ => return Ok(false),
    };
    let Ok(typed) = typed else {
        return Ok(false);
    };
    take_typed(typed, file, where_, out)?;
    Ok(true)
}

/// Converts a decoded object, named from its metadata, into `out`.
fn take_typed(typed: Typed, file: &str, where_: &str, out: &mut Loaded) -> Result<(), LoadError> {
    let ctx = |kind: &str, meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| Ctx {
        file,
        object: object_name(
            kind,
            meta.namespace.as_deref(),
            meta.name.as_deref(),
            where_,
        ),
    };
    match typed {
        Typed::Service(svc) => {
            let ctx = ctx("Service", &svc.metadata);
            if let Some(svc) = convert_service(svc, &ctx, &mut out.warnings)? {
                out.record("Service", svc.key(), &ctx, where_)?;
                out.cluster.services.push(svc);
            }
        }
        Typed::EndpointSlice(slice) => {
            let ctx = ctx("EndpointSlice", &slice.metadata);
            if let Some(slice) = convert_slice(slice, &ctx, &mut out.warnings)? {
                let key = format!("{}/{}", slice.namespace, slice.name);
                out.record("EndpointSlice", key, &ctx, where_)?;
                out.cluster.endpoint_slices.push(slice);
            }
        }
        Typed::Endpoints(eps) => {
            let ctx = ctx("Endpoints", &eps.metadata);
            for slice in convert_endpoints(eps, &ctx, &mut out.warnings)? {
                out.legacy_endpoints.push(slice);
            }
        }
    }
    Ok(())
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str()
}

fn describe(v: &Value, kind: &str, fallback: &str) -> String {
    let name = str_at(v, &["metadata", "name"]);
    let ns = str_at(v, &["metadata", "namespace"]);
    match (ns, name) {
        (Some(ns), Some(name)) => format!("{kind} {ns}/{name}"),
        (None, Some(name)) => format!("{kind} {name}"),
        _ => format!("{kind} in {fallback}"),
    }
}

fn load_value(mut v: Value, file: &str, where_: &str, out: &mut Loaded) -> Result<(), LoadError> {
    let top = Ctx {
        file,
        object: where_.to_string(),
    };
    if !v.is_object() {
        return Err(top.error(
            "",
            "expected a Kubernetes object (a mapping with apiVersion and kind)",
        ));
    }
    let kind = str_at(&v, &["kind"])
        .ok_or_else(|| top.error("kind", "missing"))?
        .to_string();
    let api_version = str_at(&v, &["apiVersion"]).unwrap_or("").to_string();
    let ctx = Ctx {
        file,
        object: describe(&v, &kind, where_),
    };
    let want_api = |want: &str| -> Result<(), LoadError> {
        if api_version.is_empty() || api_version == want {
            Ok(())
        } else {
            Err(ctx.error(
                "apiVersion",
                format!("{api_version:?} is not supported for {kind} (want {want})"),
            ))
        }
    };
    match kind.as_str() {
        "List" | "ServiceList" | "EndpointSliceList" | "EndpointsList" => {
            let items = match v.get_mut("items").map(Value::take) {
                Some(Value::Array(items)) => items,
                Some(Value::Null) | None => Vec::new(),
                Some(_) => return Err(ctx.error("items", "expected a list")),
            };
            for (i, item) in items.into_iter().enumerate() {
                load_value(item, file, &format!("{where_} items[{i}]"), out)?;
            }
            Ok(())
        }
        "Service" => {
            want_api("v1")?;
            let svc: core::Service = deserialize(v, &ctx)?;
            if let Some(svc) = convert_service(svc, &ctx, &mut out.warnings)? {
                out.record("Service", svc.key(), &ctx, where_)?;
                out.cluster.services.push(svc);
            }
            Ok(())
        }
        "EndpointSlice" => {
            want_api("discovery.k8s.io/v1")?;
            let slice: discovery::EndpointSlice = deserialize(v, &ctx)?;
            if let Some(slice) = convert_slice(slice, &ctx, &mut out.warnings)? {
                let key = format!("{}/{}", slice.namespace, slice.name);
                out.record("EndpointSlice", key, &ctx, where_)?;
                out.cluster.endpoint_slices.push(slice);
            }
            Ok(())
        }
        "Endpoints" => {
            want_api("v1")?;
            let eps: core::Endpoints = deserialize(v, &ctx)?;
            for slice in convert_endpoints(eps, &ctx, &mut out.warnings)? {
                out.legacy_endpoints.push(slice);
            }
            Ok(())
        }
        other => {
            // kube-proxy watches only Services and EndpointSlices.
            *out.skipped_kinds.entry(other.to_string()).or_default() += 1;
            Ok(())
        }
    }
}

fn deserialize<T: serde::de::DeserializeOwned>(v: Value, ctx: &Ctx<'_>) -> Result<T, LoadError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { String::new() } else { path };
        ctx.error(field, e.into_inner().to_string())
    })
}

fn name_and_namespace(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    ctx: &Ctx<'_>,
) -> Result<(String, String), LoadError> {
    let name = meta
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ctx.error("metadata.name", "missing"))?;
    let namespace = meta
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".to_string());
    Ok((name, namespace))
}

fn ignored_by_label(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    ctx: &Ctx<'_>,
    warnings: &mut Vec<Warning>,
) -> bool {
    let Some(labels) = &meta.labels else {
        return false;
    };
    // Headless objects are routine: skip them quietly, as kube-proxy does.
    if labels.contains_key(HEADLESS_LABEL) {
        return true;
    }
    for label in [SERVICE_PROXY_NAME_LABEL] {
        if labels.contains_key(label) {
            warnings.push(ctx.warning(
                format!("metadata.labels[{label}]"),
                "kube-proxy ignores objects with this label; skipped",
            ));
            return true;
        }
    }
    false
}

fn protocol(p: Option<&str>, ctx: &Ctx<'_>, field: &str) -> Result<Protocol, LoadError> {
    match p {
        None => Ok(Protocol::Tcp),
        Some(s) => Protocol::from_k8s(s).ok_or_else(|| {
            ctx.error(
                field,
                format!("unknown protocol {s:?} (expected TCP, UDP or SCTP)"),
            )
        }),
    }
}

fn port_number(n: i32, ctx: &Ctx<'_>, field: &str, allow_zero: bool) -> Result<u16, LoadError> {
    if (n == 0 && allow_zero) || (1..=65535).contains(&n) {
        Ok(n as u16)
    } else {
        Err(ctx.error(field, format!("port {n} is out of range (1-65535)")))
    }
}

fn policy(p: Option<&str>, ctx: &Ctx<'_>, field: &str) -> Result<TrafficPolicy, LoadError> {
    match p {
        None | Some("") | Some("Cluster") => Ok(TrafficPolicy::Cluster),
        Some("Local") => Ok(TrafficPolicy::Local),
        Some(other) => Err(ctx.error(
            field,
            format!("unknown traffic policy {other:?} (expected Cluster or Local)"),
        )),
    }
}

fn convert_service(
    svc: core::Service,
    ctx: &Ctx<'_>,
    warnings: &mut Vec<Warning>,
) -> Result<Option<Service>, LoadError> {
    let (name, namespace) = name_and_namespace(&svc.metadata, ctx)?;
    if ignored_by_label(&svc.metadata, ctx, warnings) {
        return Ok(None);
    }
    let spec = svc.spec.ok_or_else(|| ctx.error("spec", "missing"))?;
    let service_type = match spec.type_.as_deref() {
        None | Some("") | Some("ClusterIP") => ServiceType::ClusterIp,
        Some("NodePort") => ServiceType::NodePort,
        Some("LoadBalancer") => ServiceType::LoadBalancer,
        Some("ExternalName") => ServiceType::ExternalName,
        Some(other) => {
            return Err(ctx.error(
                "spec.type",
                format!("unknown service type {other:?} (expected ClusterIP, NodePort, LoadBalancer or ExternalName)"),
            ));
        }
    };
    // kube-proxy looks at the singular clusterIP to decide "headless".
    let primary = spec.cluster_ip.as_deref().unwrap_or("");
    let mut cluster_ips = Vec::new();
    if service_type != ServiceType::ExternalName && !primary.is_empty() && primary != "None" {
        let listed: Vec<(String, String)> = match &spec.cluster_ips {
            Some(ips) if !ips.is_empty() => ips
                .iter()
                .enumerate()
                .map(|(i, ip)| (format!("spec.clusterIPs[{i}]"), ip.clone()))
                .collect(),
            _ => vec![("spec.clusterIP".to_string(), primary.to_string())],
        };
        for (field, ip) in listed {
            let parsed = parse_ip_sloppy(&ip)
                .ok_or_else(|| ctx.error(field, format!("invalid IP address {ip:?}")))?;
            cluster_ips.push(parsed);
        }
    }
    let mut ports = Vec::new();
    for (i, p) in spec.ports.iter().flatten().enumerate() {
        let field = |f: &str| format!("spec.ports[{i}].{f}");
        ports.push(ServicePort {
            name: p.name.clone().unwrap_or_default(),
            protocol: protocol(p.protocol.as_deref(), ctx, &field("protocol"))?,
            port: port_number(p.port, ctx, &field("port"), false)?,
            node_port: port_number(p.node_port.unwrap_or(0), ctx, &field("nodePort"), true)?,
        });
    }
    if service_type != ServiceType::ExternalName && !cluster_ips.is_empty() {
        for (i, a) in ports.iter().enumerate() {
            if ports[..i]
                .iter()
                .any(|b| b.name == a.name && b.protocol == a.protocol)
            {
                return Err(ctx.error(
                    format!("spec.ports[{i}].name"),
                    format!("duplicate port name {:?} for {}", a.name, a.protocol),
                ));
            }
        }
    }
    let raw_external = spec.external_ips.clone().unwrap_or_default();
    let mut external_ips = Vec::new();
    for (i, ip) in raw_external.iter().enumerate() {
        match parse_ip_sloppy(ip) {
            Some(ip) => external_ips.push(ip),
            None => warnings.push(ctx.warning(
                format!("spec.externalIPs[{i}]"),
                format!("invalid IP address {ip:?}; kube-proxy ignores it"),
            )),
        }
    }
    let mut load_balancer_ingress = Vec::new();
    let ingress = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref());
    for (i, ing) in ingress.into_iter().flatten().enumerate() {
        let field = format!("status.loadBalancer.ingress[{i}].ip");
        let Some(ip) = ing.ip.as_deref().filter(|s| !s.is_empty()) else {
            continue;
        };
        let Some(ip) = parse_ip_sloppy(ip) else {
            warnings.push(ctx.warning(
                field,
                format!("invalid IP address {ip:?}; kube-proxy ignores it"),
            ));
            continue;
        };
        let ip_mode = match ing.ip_mode.as_deref() {
            None | Some("VIP") => IpMode::Vip,
            Some("Proxy") => IpMode::Proxy,
            Some(other) => {
                warnings.push(ctx.warning(
                    format!("status.loadBalancer.ingress[{i}].ipMode"),
                    format!("unknown ipMode {other:?}; kube-proxy treats it as not VIP"),
                ));
                IpMode::Proxy
            }
        };
        load_balancer_ingress.push(LoadBalancerIngress { ip, ip_mode });
    }
    let mut load_balancer_source_ranges = Vec::new();
    for (i, r) in spec
        .load_balancer_source_ranges
        .iter()
        .flatten()
        .enumerate()
    {
        let t = r.trim();
        if t.is_empty() {
            continue;
        }
        match parse_cidr_sloppy(t) {
            Some(net) => load_balancer_source_ranges.push(net),
            None => warnings.push(ctx.warning(
                format!("spec.loadBalancerSourceRanges[{i}]"),
                format!("invalid CIDR {r:?}; kube-proxy ignores it"),
            )),
        }
    }
    let session_affinity_timeout = match spec.session_affinity.as_deref() {
        None | Some("") | Some("None") => None,
        Some("ClientIP") => {
            let t = spec
                .session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .unwrap_or(10800);
            if !(1..=86400).contains(&t) {
                return Err(ctx.error(
                    "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                    format!("{t} is out of range (1-86400)"),
                ));
            }
            Some(t as u32)
        }
        Some(other) => {
            return Err(ctx.error(
                "spec.sessionAffinity",
                format!("unknown session affinity {other:?} (expected None or ClientIP)"),
            ));
        }
    };
    let health_check_node_port = port_number(
        spec.health_check_node_port.unwrap_or(0),
        ctx,
        "spec.healthCheckNodePort",
        true,
    )?;
    Ok(Some(Service {
        namespace,
        name,
        service_type,
        cluster_ips,
        ports,
        external_ips,
        has_external_ips: !raw_external.is_empty(),
        load_balancer_ingress,
        load_balancer_source_ranges,
        external_traffic_policy: policy(
            spec.external_traffic_policy.as_deref(),
            ctx,
            "spec.externalTrafficPolicy",
        )?,
        internal_traffic_policy: policy(
            spec.internal_traffic_policy.as_deref(),
            ctx,
            "spec.internalTrafficPolicy",
        )?,
        health_check_node_port,
        session_affinity_timeout,
    }))
}

fn convert_slice(
    slice: discovery::EndpointSlice,
    ctx: &Ctx<'_>,
    warnings: &mut Vec<Warning>,
) -> Result<Option<EndpointSlice>, LoadError> {
    let (name, namespace) = name_and_namespace(&slice.metadata, ctx)?;
    if ignored_by_label(&slice.metadata, ctx, warnings) {
        return Ok(None);
    }
    let service_name = slice
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(SERVICE_NAME_LABEL))
        .filter(|s| !s.is_empty())
        .cloned()
        .ok_or_else(|| {
            ctx.error(
                format!("metadata.labels[{SERVICE_NAME_LABEL}]"),
                "missing: the slice names no Service",
            )
        })?;
    let address_type = match slice.address_type.as_str() {
        "IPv4" => AddressType::Ipv4,
        "IPv6" => AddressType::Ipv6,
        "FQDN" => AddressType::Fqdn,
        other => {
            return Err(ctx.error(
                "addressType",
                format!("unknown address type {other:?} (expected IPv4, IPv6 or FQDN)"),
            ));
        }
    };
    let mut ports = Vec::new();
    for (i, p) in slice.ports.iter().flatten().enumerate() {
        let field = |f: &str| format!("ports[{i}].{f}");
        let port = match p.port {
            None | Some(0) => None,
            Some(n) => Some(port_number(n, ctx, &field("port"), false)?),
        };
        ports.push(EndpointPort {
            name: p.name.clone(),
            port,
            protocol: protocol(p.protocol.as_deref(), ctx, &field("protocol"))?,
        });
    }
    let mut endpoints = Vec::with_capacity(slice.endpoints.items().len());
    for (i, ep) in slice.endpoints.items().iter().enumerate() {
        let address = match ep.addresses.first() {
            None => None,
            Some(_) if address_type == AddressType::Fqdn => None,
            Some(a) => match parse_ip_sloppy(a) {
                Some(ip) if address_type.family() == Some(IpFamily::of(&ip)) => Some(ip),
                Some(_) => {
                    warnings.push(ctx.warning(
                        format!("endpoints[{i}].addresses[0]"),
                        format!(
                            "{a:?} is not an {} address; kube-proxy ignores it",
                            slice.address_type
                        ),
                    ));
                    None
                }
                None => {
                    warnings.push(ctx.warning(
                        format!("endpoints[{i}].addresses[0]"),
                        format!("invalid IP address {a:?}; kube-proxy ignores it"),
                    ));
                    None
                }
            },
        };
        let cond = ep.conditions.as_ref();
        let hints = ep.hints.as_ref();
        endpoints.push(Endpoint {
            address,
            ready: cond.and_then(|c| c.ready).unwrap_or(true),
            serving: cond.and_then(|c| c.serving).unwrap_or(true),
            terminating: cond.and_then(|c| c.terminating).unwrap_or(false),
            node_name: ep.node_name.clone(),
            zone_hints: hints
                .and_then(|h| h.for_zones.as_ref())
                .into_iter()
                .flatten()
                .map(|z| z.name.clone())
                .collect(),
            node_hints: hints
                .and_then(|h| h.for_nodes.as_ref())
                .into_iter()
                .flatten()
                .map(|n| n.name.clone())
                .collect(),
        });
    }
    Ok(Some(EndpointSlice {
        namespace,
        name,
        service_name,
        address_type,
        ports,
        endpoints,
    }))
}

/// Converts a legacy `v1 Endpoints` the way the EndpointSlice mirroring
/// controller does: one slice per subset and address family; `addresses`
/// ready, `notReadyAddresses` not ready (serving and terminating unset).
fn convert_endpoints(
    eps: core::Endpoints,
    ctx: &Ctx<'_>,
    warnings: &mut Vec<Warning>,
) -> Result<Vec<EndpointSlice>, LoadError> {
    let (name, namespace) = name_and_namespace(&eps.metadata, ctx)?;
    let labels = eps.metadata.labels.clone().unwrap_or_default();
    if labels.get(SKIP_MIRROR_LABEL).map(String::as_str) == Some("true") {
        warnings.push(ctx.warning(
            format!("metadata.labels[{SKIP_MIRROR_LABEL}]"),
            "not mirrored to EndpointSlices; skipped",
        ));
        return Ok(Vec::new());
    }
    if ignored_by_label(&eps.metadata, ctx, warnings) {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for (si, subset) in eps.subsets.iter().flatten().enumerate() {
        let mut ports = Vec::new();
        for (pi, p) in subset.ports.iter().flatten().enumerate() {
            let field = |f: &str| format!("subsets[{si}].ports[{pi}].{f}");
            ports.push(EndpointPort {
                name: Some(p.name.clone().unwrap_or_default()),
                port: Some(port_number(p.port, ctx, &field("port"), false)?),
                protocol: protocol(p.protocol.as_deref(), ctx, &field("protocol"))?,
            });
        }
        let mut by_family: [Vec<Endpoint>; 2] = [Vec::new(), Vec::new()];
        let not_ready: Vec<&str> = subset
            .not_ready_addresses
            .iter()
            .flatten()
            .map(|a| a.ip.as_str())
            .collect();
        let lists = [
            ("addresses", subset.addresses.as_ref(), true),
            (
                "notReadyAddresses",
                subset.not_ready_addresses.as_ref(),
                false,
            ),
        ];
        for (list_name, list, ready) in lists {
            for (ai, a) in list.into_iter().flatten().enumerate() {
                // An address that is both ready and not ready is not ready.
                if ready && not_ready.contains(&a.ip.as_str()) {
                    continue;
                }
                let Some(ip) = parse_ip_sloppy(&a.ip) else {
                    warnings.push(ctx.warning(
                        format!("subsets[{si}].{list_name}[{ai}].ip"),
                        format!("invalid IP address {:?}; not mirrored", a.ip),
                    ));
                    continue;
                };
                let idx = usize::from(IpFamily::of(&ip) == IpFamily::V6);
                by_family[idx].push(Endpoint {
                    address: Some(ip),
                    ready,
                    serving: true,
                    terminating: false,
                    node_name: a.node_name.clone(),
                    zone_hints: Vec::new(),
                    node_hints: Vec::new(),
                });
            }
        }
        for (idx, endpoints) in by_family.into_iter().enumerate() {
            if endpoints.is_empty() {
                continue;
            }
            out.push(EndpointSlice {
                namespace: namespace.clone(),
                name: format!(
                    "endpoints/{name}/{si}/{}",
                    if idx == 0 { "ipv4" } else { "ipv6" }
                ),
                service_name: name.clone(),
                address_type: if idx == 0 {
                    AddressType::Ipv4
                } else {
                    AddressType::Ipv6
                },
                ports: ports.clone(),
                endpoints,
            });
        }
    }
    Ok(out)
}

/// A list field that is `Vec<T>` in some Kubernetes API versions of
/// k8s-openapi and `Option<Vec<T>>` in others (`EndpointSlice.endpoints`
/// became optional in 1.36): its items either way.
trait Items<T> {
    fn items(&self) -> &[T];
}

impl<T> Items<T> for Vec<T> {
    fn items(&self) -> &[T] {
        self
    }
}

impl<T> Items<T> for Option<Vec<T>> {
    fn items(&self) -> &[T] {
        self.as_deref().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> (Cluster, Vec<Warning>) {
        load_objects(text, "t.yaml").expect("loads").finish()
    }

    #[test]
    fn lists_documents_and_json_read_alike() {
        let svc = r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"a","namespace":"n"},"spec":{"clusterIP":"10.0.0.1","ports":[{"port":80}]}}"#;
        let list = format!(r#"{{"apiVersion":"v1","kind":"ServiceList","items":[{svc}]}}"#);
        let (from_json, _) = load(svc);
        let (from_list, _) = load(&list);
        let (from_yaml, _) = load(
            "---\napiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: n}\nspec: {clusterIP: 10.0.0.1, ports: [{port: 80}]}\n---\n",
        );
        assert_eq!(from_json, from_list);
        assert_eq!(from_json, from_yaml);
        assert_eq!(from_json.services[0].ports[0].protocol, Protocol::Tcp);
        assert_eq!(from_json.services[0].ports[0].name, "");
    }

    /// The way every input was read before JSON got its fast path: the
    /// whole text as values, then each object from its value.
    fn load_through_values(text: &str) -> Result<(Cluster, Vec<Warning>), LoadError> {
        let mut loaded = Loaded::default();
        for (i, doc) in parse_documents(text, "t.json")?.into_iter().enumerate() {
            if !doc.is_null() {
                load_value(doc, "t.json", &format!("document {}", i + 1), &mut loaded)?;
            }
        }
        summarise_skipped(&mut loaded, "t.json");
        Ok(loaded.finish())
    }

    #[test]
    fn json_fast_path_reads_and_fails_exactly_as_values_do() {
        let svc = |spec: &str| {
            format!(
                r#"{{"apiVersion":"v1","kind":"Service","metadata":{{"name":"a","namespace":"n"}},"spec":{spec}}}"#
            )
        };
        let good = svc(
            r#"{"clusterIP":"10.0.0.1","ports":[{"name":"h","port":80,"nodePort":30001}],"type":"NodePort"}"#,
        );
        let slice = r#"{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"name":"a-x","namespace":"n","labels":{"kubernetes.io/service-name":"a"}},"addressType":"IPv4","endpoints":[{"addresses":["10.1.0.1"],"conditions":{"ready":true}}],"ports":[{"name":"h","port":8080}]}"#;
        let eps = r#"{"apiVersion":"v1","kind":"Endpoints","metadata":{"name":"b","namespace":"n"},"subsets":[{"addresses":[{"ip":"10.1.0.2"}],"ports":[{"port":81}]}]}"#;
        let list =
            |items: &str| format!(r#"{{"apiVersion":"v1","kind":"List","items":[{items}]}}"#);
        let cases = [
            list(&format!("{good},{slice},{eps}")),
            format!(
                "{good}
{slice}
null
{eps}"
            ),
            list(&format!(
                r#"{good},{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"p"}}}}"#
            )),
            list(r#"1,2"#),
            // A Service or EndpointSlice defined twice in one file.
            list(&format!("{good},{slice},{good}")),
            format!("{slice}\n{slice}"),
            list(&svc(
                r#"{"clusterIP":"10.0.0.1","ports":[{"port":"eighty"}]}"#,
            )),
            list(&svc(
                r#"{"clusterIP":"10.0.0.1","ports":[{"port":80,"protocol":"HTTP"}]}"#,
            )),
            list(&svc(
                r#"{"clusterIP":"10.0.0.1","clusterIP":"10.0.0.2","ports":[{"port":80}]}"#,
            )),
            list(r#"{"apiVersion":"v1","metadata":{"name":"a"}}"#),
            list(r#"{"apiVersion":"apps/v1","kind":"Service","metadata":{"name":"a"}}"#),
            list(
                r#"{"apiVersion":"v1","kind":"Service","kind":"Service","metadata":{"name":"a"},"spec":{}}"#,
            ),
            r#"{"apiVersion":"v1","kind":"List","items":{"a":1}}"#.to_string(),
            r#"{"apiVersion":"v1","kind":"List","items":null}"#.to_string(),
            format!(
                "{}\n{{\"kind\": ",
                list(r#"{"kind":"Service","metadata":{"name":"a"}}"#)
            ),
            "[1]".to_string(),
            // The kind read from the text's first members (kubectl's
            // layout, compact or indented), and texts that must not be
            // taken so: no top-level kind, an escaped kind, a wrong API
            // version, a slice without its Service label.
            list(
                "{\n  \"apiVersion\" : \"v1\",\n  \"kind\" : \"Service\",\n  \"metadata\" : {\"name\":\"p\",\"namespace\":\"n\"},\n  \"spec\" : {\"clusterIP\":\"10.0.0.3\",\"ports\":[{\"port\":80}]}\n}",
            ),
            list(
                r#"{"apiVersion":"discovery.k8s.io/v1","metadata":{"name":"a-y","ownerReferences":[{"kind":"Service","name":"a"}]},"addressType":"IPv4"}"#,
            ),
            list(
                r#"{"apiVersion":"v1","kind":"Serv\u0069ce","metadata":{"name":"a"},"spec":{"clusterIP":"10.0.0.1","ports":[{"port":80}]}}"#,
            ),
            list(r#"{"apiVersion":"v2","kind":"Endpoints","metadata":{"name":"b"}}"#),
            list(
                r#"{"kind":"EndpointSlice","apiVersion":"discovery.k8s.io/v1","metadata":{"name":"a-z","namespace":"n"},"addressType":"IPv4","endpoints":[]}"#,
            ),
            // kubectl's own layout (members sorted: items before kind),
            // indented, and texts the one-pass reader must leave to the
            // checked path: a syntax error after a bad item, trailing
            // garbage, a non-list with items, keys twice or escaped.
            format!(
                "{{\n  \"apiVersion\": \"v1\",\n  \"items\": [\n    {good},\n    {slice}\n  ],\n  \"kind\": \"List\",\n  \"metadata\": {{\"resourceVersion\": \"\"}}\n}}\n"
            ),
            format!(
                r#"{{"apiVersion":"v1","items":[{},{slice}],"kind":"List","metadata":{{}}}} {{"kind": "#,
                svc(r#"{"clusterIP":"bad","ports":[{"port":80}]}"#)
            ),
            format!(r#"{{"apiVersion":"v1","items":[{good}],"kind":"List"}} x"#),
            format!(r#"{{"apiVersion":"v1","items":[{good}],"kind":"List"}},"#),
            format!(r#"{{"apiVersion":"v1","items":[{good},],"kind":"List"}}"#),
            format!(r#"{{"items":[{good}],"kind":"ServiceSet"}}"#),
            format!(r#"{{"items":[{good}],"kind":"List","items":[{slice}]}}"#),
            format!(r#"{{"items":[{good}],"kind":"List","kind":"List"}}"#),
            format!(r#"{{"items":[{good}],"k\u0069nd":"List"}}"#),
            format!(r#"{{"items":[{good}],"kind":7}}"#),
            format!(r#"{{"items":null,"kind":"List"}} {good}"#),
            format!(r#"{{"items":[],"kind":"List"}}{good}null"#),
            format!(r#"{{"kind":"List","items":[{good}]}} 7"#),
        ];
        for text in &cases {
            let fast = load_objects(text, "t.json").map(Loaded::finish);
            assert_eq!(fast, load_through_values(text), "{text}");
        }
        // The one-pass reader takes kubectl's layouts (and the checked
        // path is not what answered above).
        for i in [0, 2, 16, 21, 31] {
            let text = &cases[i];
            let mut scratch = Loaded::default();
            assert!(
                load_json_stream(text, "t.json", &mut scratch).is_some(),
                "{text}"
            );
        }
        for i in [1, 22, 23, 24, 25, 26, 27, 28, 29, 30, 32, 33] {
            let text = &cases[i];
            let mut scratch = Loaded::default();
            assert!(
                load_json_stream(text, "t.json", &mut scratch).is_none(),
                "{text}"
            );
        }
        let (c, _) = load_objects(&cases[0], "t.json").expect("loads").finish();
        assert_eq!((c.services.len(), c.endpoint_slices.len()), (1, 2));
    }

    #[test]
    fn addresses_are_canonical_and_bad_ones_skipped_with_warnings() {
        let (c, w) = load(
            "apiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: n}\nspec:\n  type: LoadBalancer\n  clusterIP: 172.30.0.041\n  externalIPs: [192.168.099.022, nope]\n  loadBalancerSourceRanges: [' 203.0.113.000/025', 10.0.0.0/99]\n  ports: [{port: 80, nodePort: 3001}]\nstatus:\n  loadBalancer:\n    ingress: [{ip: 1.2.3.004}, {ip: 1.2.3.5, ipMode: Bogus}, {hostname: x}]\n",
        );
        let s = &c.services[0];
        assert_eq!(s.cluster_ips[0].to_string(), "172.30.0.41");
        assert_eq!(
            s.external_ips
                .iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>(),
            ["192.168.99.22"]
        );
        assert!(s.has_external_ips);
        assert_eq!(
            s.load_balancer_source_ranges[0].to_string(),
            "203.0.113.0/25"
        );
        assert_eq!(s.load_balancer_source_ranges.len(), 1);
        assert_eq!(s.load_balancer_ingress[0].ip.to_string(), "1.2.3.4");
        assert_eq!(s.load_balancer_ingress[1].ip_mode, IpMode::Proxy);
        let fields: Vec<_> = w.iter().filter_map(|w| w.field.clone()).collect();
        assert_eq!(
            fields,
            [
                "spec.externalIPs[1]",
                "status.loadBalancer.ingress[1].ipMode",
                "spec.loadBalancerSourceRanges[1]"
            ]
        );
    }

    #[test]
    fn large_multi_document_files_load() {
        // More documents and nodes than the YAML parser's default budget.
        let text: String = (0..3000)
            .map(|i| {
                format!(
                    "apiVersion: v1\nkind: Service\nmetadata: {{name: s{i}, namespace: n}}\nspec:\n  clusterIP: 10.96.{}.{}\n  ports: [{{name: http, port: 80, protocol: TCP}}]\n---\n",
                    i / 250,
                    i % 250 + 1
                )
            })
            .collect();
        let (c, w) = load(&text);
        assert_eq!(c.services.len(), 3000, "{w:?}");
        // A bad document still gives a one-line error.
        let err = load_objects("a: [\n", "bad.yaml").unwrap_err().to_string();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("bad.yaml: "), "{err}");
    }

    #[test]
    fn anchors_are_read_and_alias_bombs_stop_early() {
        // A hand-written file sharing its ports through an anchor: 99
        // aliases (the parser's budget refuses more than ten an anchor from
        // a hundred on), each replaying a sequence of one port.
        let mut text = String::from("kind: List\napiVersion: v1\nitems:\n");
        for i in 0..100 {
            let ports = if i == 0 {
                "&ports [{name: http, port: 80, protocol: TCP}]"
            } else {
                "*ports"
            };
            text.push_str(&format!(
                "- {{apiVersion: v1, kind: Service, metadata: {{name: s{i}, namespace: n}}, spec: {{clusterIP: 10.96.{}.{}, ports: {ports}}}}}\n",
                i / 250,
                i % 250 + 1
            ));
        }
        let (c, w) = load(&text);
        assert_eq!(c.services.len(), 100, "{w:?}");
        assert!(c.services.iter().all(|s| s.ports.len() == 1));
        // Nine levels of nine aliases (9^9 events): refused at the replay
        // limit, whatever the file's size.
        let mut bomb = String::from("a: &a [x,x,x,x,x,x,x,x,x]\n");
        for (prev, name) in "abcdefgh".chars().zip("bcdefghi".chars()) {
            bomb.push_str(&format!(
                "{name}: &{name} [{}]\n",
                vec![format!("*{prev}"); 9].join(",")
            ));
        }
        let err = load_objects(&bomb, "bomb.yaml").unwrap_err().to_string();
        assert!(err.contains("alias replay limit exceeded"), "{err}");
    }

    #[test]
    fn headless_and_external_name_have_no_cluster_ip() {
        let (c, _) = load(
            "apiVersion: v1\nkind: Service\nmetadata: {name: h, namespace: n}\nspec: {clusterIP: None, ports: [{port: 80}]}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: e, namespace: n}\nspec: {type: ExternalName, externalName: example.com}\n",
        );
        assert!(c.services.iter().all(|s| s.cluster_ips.is_empty()));
    }

    #[test]
    fn endpoint_slice_conditions_and_hints() {
        let (c, w) = load(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s, namespace: n, labels: {kubernetes.io/service-name: a}}\naddressType: IPv4\nendpoints:\n- addresses: [10.0.0.01]\n  conditions: {ready: false, serving: true, terminating: true}\n  nodeName: node-1\n  hints: {forZones: [{name: z1}], forNodes: [{name: node-1}]}\n- addresses: ['fd00::1']\n- addresses: []\nports: [{port: 80}, {name: p, port: 81, protocol: UDP}]\n",
        );
        let s = &c.endpoint_slices[0];
        assert_eq!(s.service_name, "a");
        let e = &s.endpoints[0];
        assert_eq!(
            e.address.map(|a| a.to_string()).as_deref(),
            Some("10.0.0.1")
        );
        assert!(!e.ready && e.serving && e.terminating);
        assert_eq!(e.zone_hints, ["z1"]);
        assert_eq!(e.node_hints, ["node-1"]);
        assert!(
            s.endpoints[1].address.is_none(),
            "IPv6 address in an IPv4 slice"
        );
        assert!(s.endpoints[2].address.is_none());
        assert_eq!(s.ports[0].name, None);
        assert_eq!(s.ports[1].protocol, Protocol::Udp);
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn legacy_endpoints_are_mirrored_unless_slices_exist() {
        let eps = "apiVersion: v1\nkind: Endpoints\nmetadata: {name: a, namespace: n}\nsubsets:\n- addresses: [{ip: 10.0.0.1, nodeName: k1}, {ip: 'fd00::1'}]\n  notReadyAddresses: [{ip: 10.0.0.2}]\n  ports: [{port: 80}]\n";
        let (c, _) = load(eps);
        assert_eq!(c.endpoint_slices.len(), 2);
        let v4 = c
            .endpoint_slices
            .iter()
            .find(|s| s.address_type == AddressType::Ipv4)
            .expect("v4");
        assert_eq!(v4.endpoints.len(), 2);
        assert!(v4.endpoints[0].ready && !v4.endpoints[1].ready);
        assert_eq!(v4.endpoints[0].node_name.as_deref(), Some("k1"));
        assert_eq!(v4.ports[0].name.as_deref(), Some(""));
        let slice = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: a-x, namespace: n, labels: {kubernetes.io/service-name: a}}\naddressType: IPv4\nendpoints: []\n";
        let mut loaded = load_objects(eps, "e.yaml").expect("eps");
        loaded.extend(load_objects(slice, "s.yaml").expect("slice"));
        let (c, _) = loaded.finish();
        assert_eq!(
            c.endpoint_slices.len(),
            1,
            "the EndpointSlice wins over mirrored Endpoints"
        );
        let skip = eps.replace(
            "namespace: n}",
            "namespace: n, labels: {endpointslice.kubernetes.io/skip-mirror: 'true'}}",
        );
        let (c, w) = load(&skip);
        assert!(c.endpoint_slices.is_empty());
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn other_service_proxies_are_ignored() {
        let (c, w) = load(
            "apiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: n, labels: {service.kubernetes.io/service-proxy-name: cilium}}\nspec: {clusterIP: 10.0.0.1, ports: [{port: 80}]}\n",
        );
        assert!(c.services.is_empty());
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn errors_name_file_object_and_field() {
        let err = load_objects(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s, namespace: n, labels: {kubernetes.io/service-name: a}}\naddressType: IPv5\n",
            "f.yaml",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "f.yaml: EndpointSlice n/s: addressType: unknown address type \"IPv5\" (expected IPv4, IPv6 or FQDN)"
        );
        let err = load_objects(
            "apiVersion: apps/v1\nkind: Service\nmetadata: {name: a}\n",
            "f.yaml",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("f.yaml: Service a: apiVersion:"),
            "{err}"
        );
        let err = load_objects("- 1\n- 2\n", "f.yaml").unwrap_err();
        assert!(
            err.to_string().contains("expected a Kubernetes object"),
            "{err}"
        );
        let err = load_objects(
            "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {clusterIP: 10.0.0.1, ports: [{name: x, port: 80}, {name: x, port: 81}]}\n",
            "f.yaml",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("spec.ports[1].name: duplicate port name"),
            "{err}"
        );
    }
}
