//! A connected client and the global options: sends requests, checks replies, prints JSON.

use crate::args::Global;
use crate::{EXIT_FAILED, EXIT_TRANSPORT};
use butterfly_api::pb::{message_v0 as v0, proto, MessageV0};
use butterfly_api::text;
use butterfly_api::transport::{Client, TransportError};

/// A failed command: message and exit code.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: i32,
    pub(crate) msg: String,
}

pub(crate) fn usage(msg: impl Into<String>) -> Failure {
    Failure { code: EXIT_FAILED, msg: msg.into() }
}

impl From<TransportError> for Failure {
    fn from(e: TransportError) -> Self {
        let code = match e {
            TransportError::Envelope(_)
            | TransportError::Encrypted(_)
            | TransportError::Crypto(_)
            | TransportError::CurveRefused { .. }
            | TransportError::SecurityMismatch { .. }
            | TransportError::Handshake { .. }
            | TransportError::BadEndpoint(_) => EXIT_FAILED,
            _ => EXIT_TRANSPORT,
        };
        Failure { code, msg: e.to_string() }
    }
}

pub(crate) struct Ctx {
    pub(crate) client: Client,
    pub(crate) global: Global,
}

impl Ctx {
    pub(crate) fn verbose(&self, what: &str, m: &proto::Messages) {
        if self.global.verbose {
            eprintln!("################ {what} ################");
            eprint!("{}", text::to_text(m).unwrap_or_default());
            eprintln!("################################################");
        }
    }

    pub(crate) fn send(&self, msgs: &proto::Messages) -> Result<proto::Messages, Failure> {
        self.verbose("request", msgs);
        let reply = match self.client.request(msgs) {
            Ok(r) => r,
            Err(e @ TransportError::Encrypted(_)) => {
                let mut f = Failure::from(e);
                f.msg.push_str(" (the daemon could not decrypt the request: is -k the daemon's key?)");
                return Err(f);
            }
            Err(e) => return Err(e.into()),
        };
        self.verbose("reply", &reply);
        Ok(reply)
    }

    /// What a REJECTED envelope most likely means, given whether this client encrypts.
    pub(crate) fn rejected_hint(&self) -> &'static str {
        if self.global.key.is_some() {
            " (a daemon without an encryption key rejects encrypted requests: leave out -k?)"
        } else {
            " (a daemon started with -k rejects clear requests: give its key with -k FILE)"
        }
    }

    /// Sends requests, checks every reply, prints JSON when asked.
    pub(crate) fn call_many(&self, reqs: Vec<v0::Request>) -> Result<Vec<v0::Response>, Failure> {
        self.call_many_opt(reqs, self.global.json)
    }

    pub(crate) fn call_many_opt(
        &self,
        reqs: Vec<v0::Request>,
        print_json: bool,
    ) -> Result<Vec<v0::Response>, Failure> {
        let n = reqs.len();
        let msgs = wrap(reqs);
        let reply = self.send(&msgs)?;
        // An envelope error first: a request refused whole (REJECTED) gets one message back,
        // however many it carried.
        if let Some(c) = reply.messages.iter().find_map(|m| m.error.as_ref().and_then(|e| e.code)) {
            let name =
                proto::error::Code::try_from(c).map(|c| c.as_str_name().to_string()).unwrap_or(c.to_string());
            let hint = if c == proto::error::Code::Rejected as i32 { self.rejected_hint() } else { "" };
            return Err(usage(format!("error in response: {name}{hint}")));
        }
        if reply.messages.len() != n {
            return Err(Failure { code: EXIT_TRANSPORT, msg: "no message in response".into() });
        }
        let mut out = Vec::new();
        for m in reply.messages {
            let Some(r) = m.message_0.and_then(|m| m.response) else {
                return Err(Failure { code: EXIT_TRANSPORT, msg: "no response in reply".into() });
            };
            if print_json {
                if let Ok(v) = text::message_to_json("MessageV0.Response", &r) {
                    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                }
            }
            if !r.status.status {
                let d = r.status.error.as_ref().and_then(|e| e.description.clone()).unwrap_or_default();
                return Err(usage(format!("error in response\ndescription: {d}")));
            }
            out.push(r);
        }
        Ok(out)
    }

    pub(crate) fn call(&self, req: v0::Request) -> Result<v0::Response, Failure> {
        self.call_many(vec![req])?.pop().ok_or_else(|| usage("no message in response"))
    }

    /// Like [`call`](Self::call) for a request an older daemon may not know (butterfly-rs
    /// extensions): a refusal gives `None` (and prints nothing), transport errors stay errors.
    pub(crate) fn try_call(
        &self,
        req: v0::Request,
        print_json: bool,
    ) -> Result<Option<v0::Response>, Failure> {
        match self.call_many_opt(vec![req], false) {
            Ok(mut r) => {
                let r = r.pop();
                if let (Some(r), true) = (&r, print_json) {
                    if let Ok(v) = text::message_to_json("MessageV0.Response", r) {
                        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                    }
                }
                Ok(r)
            }
            Err(f) if f.code == EXIT_FAILED => Ok(None),
            Err(f) => Err(f),
        }
    }

    pub(crate) fn human(&self) -> bool {
        !self.global.json
    }
}

pub(crate) fn wrap(reqs: Vec<v0::Request>) -> proto::Messages {
    proto::Messages {
        messages: reqs
            .into_iter()
            .map(|r| proto::Message {
                revision: butterfly_api::PROTO_REVISION,
                error: None,
                message_0: Some(MessageV0 { request: Some(r), response: None, message_id: None }),
            })
            .collect(),
        encrypted: None,
    }
}

pub(crate) fn req() -> v0::Request {
    v0::Request::default()
}
