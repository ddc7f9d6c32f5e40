//! Envelope processing: bytes in, bytes out, independent of ZeroMQ.

use crate::crypto::{self, Key};
use crate::handler::{Handler, HandlerError};
use crate::pb::{self, message_v0 as v0, proto};
use crate::types::*;
use crate::PROTO_REVISION;
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, ReflectMessage as _, Value};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// Default request size limit (bytes).
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;
/// Default limit on `Message`s per request.
pub const DEFAULT_MAX_MESSAGES: usize = 10_000;

/// The descriptor pool of the schema.
pub fn descriptor_pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        // The set is produced by our own build script; failing to decode it
        // would be a build defect, so fall back to an empty pool (every
        // lookup then fails cleanly instead of panicking).
        DescriptorPool::decode(pb::DESCRIPTOR_SET).unwrap_or_default()
    })
}

fn descriptor(name: &str) -> Option<MessageDescriptor> {
    descriptor_pool().get_message_by_name(name)
}

/// Names (dotted paths) of required fields missing in a message, recursively.
pub fn missing_required(msg: &DynamicMessage) -> Vec<String> {
    let mut out = Vec::new();
    walk_missing(msg, "", &mut out);
    out
}

fn walk_missing(msg: &DynamicMessage, prefix: &str, out: &mut Vec<String>) {
    for field in msg.descriptor().fields() {
        let path =
            if prefix.is_empty() { field.name().to_string() } else { format!("{prefix}.{}", field.name()) };
        if field.cardinality() == prost_reflect::Cardinality::Required && !msg.has_field(&field) {
            out.push(path.clone());
        }
        if !msg.has_field(&field) {
            continue;
        }
        match &*msg.get_field(&field) {
            Value::Message(m) => walk_missing(m, &path, out),
            Value::List(items) => {
                for (i, v) in items.iter().enumerate() {
                    if let Value::Message(m) = v {
                        walk_missing(m, &format!("{path}[{i}]"), out);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Result of processing one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Serialized `proto.Messages` to send back.
    pub bytes: Vec<u8>,
    /// An `app_quit` was executed successfully.
    pub quit: bool,
}

/// Settings of a [`Dispatcher`].
#[derive(Debug, Clone)]
pub struct DispatchConfig {
    /// Requests above this size are answered with REJECTED.
    pub max_request_bytes: usize,
    /// Requests with more `Message`s are answered with REJECTED.
    pub max_messages: usize,
    /// Pre-shared key: when set, clear requests are rejected.
    pub key: Option<Key>,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig {
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            max_messages: DEFAULT_MAX_MESSAGES,
            key: None,
        }
    }
}

/// Decodes requests, validates them, calls a [`Handler`] and encodes replies.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    config: DispatchConfig,
    request_counter: u64,
    start_date: u64,
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn envelope_error(code: proto::error::Code) -> proto::Message {
    proto::Message {
        revision: PROTO_REVISION,
        error: Some(proto::Error { code: Some(code as i32) }),
        message_0: None,
    }
}

fn single(code: proto::error::Code) -> proto::Messages {
    proto::Messages { messages: vec![envelope_error(code)], encrypted: None }
}

fn encrypted_error(code: pb::encrypted::error::Code) -> proto::Messages {
    proto::Messages {
        messages: Vec::new(),
        encrypted: Some(pb::Encrypted {
            error: Some(pb::encrypted::Error { code: Some(code as i32) }),
            aes256cbc_sha512: None,
        }),
    }
}

fn ok_response() -> v0::Response {
    v0::Response { status: v0::Status { status: true, error: None }, ..Default::default() }
}

fn nok_response(description: String) -> v0::Response {
    v0::Response {
        status: v0::Status {
            status: false,
            error: Some(v0::Error { description: Some(description), ..Default::default() }),
        },
        ..Default::default()
    }
}

/// Which request kind a `Request` carries (Butterfly's precedence).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    NicAdd,
    NicUpdate,
    NicDel,
    NicList,
    NicDetails,
    NicExport,
    NicStats,
    SgAdd,
    SgDel,
    SgList,
    SgRuleAdd,
    SgRuleDel,
    SgRuleList,
    SgMemberAdd,
    SgMemberDel,
    SgMemberList,
    AppStatus,
    AppQuit,
    AppConfig,
    SgDetails,
    VniSet,
    VniDetails,
    NicImport,
    UnderlayTrace,
}

fn kind(r: &v0::Request) -> Option<Kind> {
    Some(if r.nic_add.is_some() {
        Kind::NicAdd
    } else if r.nic_update.is_some() {
        Kind::NicUpdate
    } else if r.nic_del.is_some() {
        Kind::NicDel
    } else if r.nic_list.is_some() {
        Kind::NicList
    } else if r.nic_details.is_some() {
        Kind::NicDetails
    } else if r.nic_export.is_some() {
        Kind::NicExport
    } else if r.nic_stats.is_some() {
        Kind::NicStats
    } else if r.sg_add.is_some() {
        Kind::SgAdd
    } else if r.sg_del.is_some() {
        Kind::SgDel
    } else if r.sg_list.is_some() {
        Kind::SgList
    } else if r.sg_rule_add.is_some() {
        Kind::SgRuleAdd
    } else if r.sg_rule_del.is_some() {
        Kind::SgRuleDel
    } else if r.sg_rule_list.is_some() {
        Kind::SgRuleList
    } else if r.sg_member_add.is_some() {
        Kind::SgMemberAdd
    } else if r.sg_member_del.is_some() {
        Kind::SgMemberDel
    } else if r.sg_member_list.is_some() {
        Kind::SgMemberList
    } else if r.app_status.is_some() {
        Kind::AppStatus
    } else if r.app_quit.is_some() {
        Kind::AppQuit
    } else if r.app_config.is_some() {
        Kind::AppConfig
    } else if r.sg_details.is_some() {
        Kind::SgDetails
    } else if r.vni_set.is_some() {
        Kind::VniSet
    } else if r.vni_details.is_some() {
        Kind::VniDetails
    } else if r.nic_import.is_some() {
        Kind::NicImport
    } else if r.underlay_trace.is_some() {
        Kind::UnderlayTrace
    } else {
        return None;
    })
}

fn describe(kind: Kind, e: HandlerError) -> String {
    match e {
        HandlerError::NicNotFound(id) if kind == Kind::NicUpdate => {
            format!("NIC does not exist with id {id}")
        }
        HandlerError::NicNotFound(id) => format!("NIC: {id} not found"),
        HandlerError::SgNotFound(_) if kind == Kind::SgDetails => "Sg not found".to_string(),
        HandlerError::SgNotFound(_) => "Security Group not found".to_string(),
        HandlerError::Failed(s) => s,
    }
}

fn opt_id(s: &str) -> Option<&str> {
    if s.is_empty() {
        None
    } else {
        Some(s)
    }
}

impl Default for Dispatcher {
    fn default() -> Self {
        Self::new(DispatchConfig::default())
    }
}

impl Dispatcher {
    /// A dispatcher; the start date is now.
    pub fn new(config: DispatchConfig) -> Self {
        Dispatcher { config, request_counter: 0, start_date: now() }
    }

    /// Requests received so far.
    pub fn request_counter(&self) -> u64 {
        self.request_counter
    }

    /// Processes one serialized request and returns the serialized reply.
    /// Never panics; a panicking handler yields INTERNAL_ERROR for the
    /// message being processed.
    pub fn handle_bytes<H: Handler>(&mut self, handler: &mut H, request: &[u8]) -> Reply {
        self.request_counter += 1;
        let mut quit = false;
        let reply = self.process_outer(handler, request, &mut quit);
        Reply { bytes: reply.encode_to_vec(), quit }
    }

    fn process_outer<H: Handler>(
        &mut self,
        handler: &mut H,
        request: &[u8],
        quit: &mut bool,
    ) -> proto::Messages {
        use proto::error::Code;
        if request.len() > self.config.max_request_bytes {
            return single(Code::Rejected);
        }
        let Ok(msgs) = proto::Messages::decode(request) else {
            return single(Code::ParseError);
        };
        if let Some(enc) = &msgs.encrypted {
            let Some(key) = self.config.key.clone() else {
                return single(Code::Rejected);
            };
            let Some(blob) = &enc.aes256cbc_sha512 else {
                return encrypted_error(pb::encrypted::error::Code::NotSupported);
            };
            let Ok(inner) = crypto::decrypt(&key, blob) else {
                return encrypted_error(pb::encrypted::error::Code::Rejected);
            };
            let inner_reply = match proto::Messages::decode(inner.as_slice()) {
                Err(_) => single(Code::ParseError),
                Ok(m) if m.encrypted.is_some() => single(Code::Rejected),
                Ok(m) => self.process_clear(handler, &m, &inner, quit),
            };
            return match crypto::encrypt(&key, &inner_reply.encode_to_vec()) {
                Ok(blob) => proto::Messages {
                    messages: Vec::new(),
                    encrypted: Some(pb::Encrypted { error: None, aes256cbc_sha512: Some(blob) }),
                },
                Err(_) => encrypted_error(pb::encrypted::error::Code::InternalError),
            };
        }
        if self.config.key.is_some() {
            return single(Code::Rejected);
        }
        self.process_clear(handler, &msgs, request, quit)
    }

    fn process_clear<H: Handler>(
        &mut self,
        handler: &mut H,
        msgs: &proto::Messages,
        raw: &[u8],
        quit: &mut bool,
    ) -> proto::Messages {
        use proto::error::Code;
        if msgs.messages.is_empty() || msgs.messages.len() > self.config.max_messages {
            return single(Code::Rejected);
        }
        // Required-field presence, per Message (prost does not check it).
        let missing: Vec<Vec<String>> =
            match descriptor("proto.Messages").and_then(|d| DynamicMessage::decode(d, raw).ok()) {
                Some(dm) => match dm.get_field_by_name("messages").as_deref() {
                    Some(Value::List(items)) if items.len() == msgs.messages.len() => items
                        .iter()
                        .map(|v| match v {
                            Value::Message(m) => missing_required(m),
                            _ => vec!["?".to_string()],
                        })
                        .collect(),
                    _ => return single(Code::InternalError),
                },
                None => return single(Code::ParseError),
            };
        let mut replies = Vec::with_capacity(msgs.messages.len());
        for (m, missing) in msgs.messages.iter().zip(missing) {
            replies.push(self.process_message(handler, m, &missing, quit));
        }
        proto::Messages { messages: replies, encrypted: None }
    }

    fn process_message<H: Handler>(
        &mut self,
        handler: &mut H,
        m: &proto::Message,
        missing: &[String],
        quit: &mut bool,
    ) -> proto::Message {
        use proto::error::Code;
        if !missing.is_empty() {
            let mut reply = envelope_error(Code::ParseError);
            if let Some(m0) = &m.message_0 {
                reply.message_0 = Some(pb::MessageV0 {
                    request: None,
                    response: Some(nok_response(format!(
                        "missing required field(s): {}",
                        missing.join(", ")
                    ))),
                    message_id: m0.message_id.clone(),
                });
            }
            return reply;
        }
        let Some(m0) = &m.message_0 else {
            return envelope_error(Code::VersionNotManaged);
        };
        let response =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.process_v0(handler, m0, quit)));
        match response {
            Ok(response) => proto::Message {
                revision: PROTO_REVISION,
                error: None,
                message_0: Some(pb::MessageV0 {
                    request: None,
                    response: Some(response),
                    message_id: m0.message_id.clone(),
                }),
            },
            Err(_) => envelope_error(Code::InternalError),
        }
    }

    fn process_v0<H: Handler>(&mut self, h: &mut H, m0: &pb::MessageV0, quit: &mut bool) -> v0::Response {
        let Some(r) = &m0.request else {
            return nok_response("MessageV0 appears to not have any request inside".into());
        };
        let Some(k) = kind(r) else {
            return nok_response("MessageV0 appears to not have any request".into());
        };
        match self.run(h, r, k, quit) {
            Ok(resp) => resp,
            Err(desc) => nok_response(desc),
        }
    }

    fn run<H: Handler>(
        &mut self,
        h: &mut H,
        r: &v0::Request,
        k: Kind,
        quit: &mut bool,
    ) -> Result<v0::Response, String> {
        let d = |e: HandlerError| describe(k, e);
        let v = |e: ValidationError| e.to_string();
        let mut resp = ok_response();
        let s = |o: &Option<String>| o.clone().unwrap_or_default();
        match k {
            Kind::NicAdd => {
                let spec = NicSpec::try_from(r.nic_add.as_ref().ok_or("")?).map_err(v)?;
                let info = h.nic_add(spec).map_err(d)?;
                resp.nic_add = Some(v0::NicAddRes { path: Some(info.path) });
            }
            Kind::NicUpdate => {
                let u = NicUpdate::try_from(r.nic_update.as_ref().ok_or("")?).map_err(|e| match e {
                    ValidationError::Ip(_) => e.to_string(),
                    other => ValidationError::NicUpdate(other.to_string()).to_string(),
                })?;
                h.nic_update(u).map_err(d)?;
            }
            Kind::NicDel => h.nic_del(&s(&r.nic_del)).map_err(d)?,
            Kind::NicList => resp.nic_list = h.nic_list().map_err(d)?,
            Kind::NicDetails => {
                let id = s(&r.nic_details);
                resp.nic_details = h.nic_details(opt_id(&id)).map_err(d)?.iter().map(v0::Nic::from).collect();
            }
            Kind::NicExport => {
                let data = h.nic_export(&s(&r.nic_export)).map_err(d)?;
                resp.nic_export = Some(v0::NicExportRes { fw_data: Some(v0::FwData { data: Some(data) }) });
            }
            Kind::NicStats => {
                let st = h.nic_stats(&s(&r.nic_stats)).map_err(d)?;
                resp.nic_stats = Some(v0::NicStats {
                    r#in: st.rx_bytes,
                    out: st.tx_bytes,
                    bench: st.bench.as_ref().map(v0::BenchStats::from),
                });
            }
            Kind::SgAdd => {
                let sg = SecurityGroup::try_from(r.sg_add.as_ref().ok_or("")?).map_err(v)?;
                h.sg_add(sg).map_err(d)?;
            }
            Kind::SgDel => h.sg_del(&s(&r.sg_del)).map_err(d)?,
            Kind::SgList => resp.sg_list = h.sg_list().map_err(d)?,
            Kind::SgDetails => {
                let id = s(&r.sg_details);
                resp.sg_details = h.sg_details(opt_id(&id)).map_err(d)?.iter().map(v0::Sg::from).collect();
            }
            Kind::SgRuleAdd | Kind::SgRuleDel => {
                let (sg_id, rule) = match (k, &r.sg_rule_add, &r.sg_rule_del) {
                    (Kind::SgRuleAdd, Some(a), _) => (&a.sg_id, &a.rule),
                    (_, _, Some(b)) => (&b.sg_id, &b.rule),
                    _ => return Err("Internal error".into()),
                };
                let rule = Rule::try_from(rule).map_err(v)?;
                if k == Kind::SgRuleAdd {
                    h.sg_rule_add(sg_id, rule).map_err(d)?;
                } else {
                    h.sg_rule_del(sg_id, rule).map_err(d)?;
                }
            }
            Kind::SgRuleList => {
                resp.sg_rule_list =
                    h.sg_rule_list(&s(&r.sg_rule_list)).map_err(d)?.iter().map(v0::Rule::from).collect()
            }
            Kind::SgMemberAdd | Kind::SgMemberDel => {
                let (sg_id, member) = match (k, &r.sg_member_add, &r.sg_member_del) {
                    (Kind::SgMemberAdd, Some(a), _) => (&a.sg_id, &a.member),
                    (_, _, Some(b)) => (&b.sg_id, &b.member),
                    _ => return Err("Internal error".into()),
                };
                let ip = parse_ip(member).map_err(v)?;
                if k == Kind::SgMemberAdd {
                    h.sg_member_add(sg_id, ip).map_err(d)?;
                } else {
                    h.sg_member_del(sg_id, ip).map_err(d)?;
                }
            }
            Kind::SgMemberList => {
                resp.sg_member_list = h
                    .sg_member_list(&s(&r.sg_member_list))
                    .map_err(d)?
                    .iter()
                    .map(|i| i.to_string())
                    .collect()
            }
            Kind::AppStatus => {
                let base = AppStatus {
                    start_date: self.start_date,
                    current_date: now(),
                    request_counter: self.request_counter,
                    graph_dot: String::new(),
                };
                let st = h.app_status(base).map_err(d)?;
                resp.app_status = Some(v0::AppStatusRes {
                    start_date: Some(st.start_date),
                    current_date: Some(st.current_date),
                    request_counter: Some(st.request_counter),
                    graph_dot: Some(st.graph_dot),
                });
            }
            Kind::AppQuit => {
                h.app_quit().map_err(d)?;
                *quit = true;
            }
            Kind::AppConfig => {
                let c = AppConfig::try_from(r.app_config.as_ref().ok_or("")?).map_err(v)?;
                h.app_config(c).map_err(d)?;
            }
            Kind::VniSet => {
                let set = VniSet::try_from(r.vni_set.as_ref().ok_or("")?).map_err(v)?;
                h.vni_set(set).map_err(d)?;
            }
            Kind::VniDetails => {
                let vni = r.vni_details.as_ref().and_then(|q| q.vni);
                if let Some(n) = vni.filter(|&n| n > VNI_MAX) {
                    return Err(
                        ValidationError::Vni(format!("VNI {n} is out of range (0..={VNI_MAX})")).to_string()
                    );
                }
                resp.vni_details = h.vni_details(vni).map_err(d)?.iter().map(v0::VniState::from).collect();
            }
            Kind::NicImport => {
                let imp = NicImport::try_from(r.nic_import.as_ref().ok_or("")?).map_err(v)?;
                let done = h.nic_import(imp).map_err(d)?;
                resp.nic_import =
                    Some(v0::NicImportRes { imported: Some(done.imported), skipped: Some(done.skipped) });
            }
            Kind::UnderlayTrace => {
                let set = UnderlayTrace::request(r.underlay_trace.as_ref().ok_or("")?).map_err(v)?;
                let now = h.underlay_trace(set).map_err(d)?;
                resp.underlay_trace = Some(v0::UnderlayTrace::from(&now));
            }
        }
        Ok(resp)
    }
}
