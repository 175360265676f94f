//! Task events back to containerd (`/tasks/create`, `/tasks/exit`, ...), published in order by one thread.
//!
//! containerd may restart while the shim lives on: a failed publish reconnects to containerd's ttrpc socket and
//! retries (every 200 ms, for up to 2 minutes per event), so an exit that happens while containerd is down reaches
//! the new containerd. Events carry the time they happened, not the time they were sent. The connection is closed
//! when no event came for 2 s (a ttrpc client holds two threads).

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::Message;
use containerd_shim::protos::shim::event::Envelope;
use containerd_shim::protos::shim::events::ForwardRequest;
use containerd_shim::protos::ttrpc::context::Context;
use containerd_shim::protos::{Client, EventsClient};
use containerd_shim::{error, warn};

struct Event {
    topic: &'static str,
    at: Timestamp,
    any: Any,
}

/// The sending side, shared by the task service.
pub struct Publisher {
    tx: Mutex<Sender<Event>>,
    namespace: String,
}

/// Now, as a protobuf timestamp.
pub fn now() -> Timestamp {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Timestamp { seconds: d.as_secs() as i64, nanos: d.subsec_nanos() as i32, ..Default::default() }
}

impl Publisher {
    /// Start the publishing thread. `address` is containerd's ttrpc socket (TTRPC_ADDRESS); `first` an already
    /// connected client, if the bootstrap made one.
    pub fn start(address: String, namespace: String) -> Publisher {
        let (tx, rx) = channel();
        let ns = namespace.clone();
        let spawned = std::thread::Builder::new()
            .name("events".into())
            .stack_size(64 * 1024)
            .spawn(move || run(rx, &address, &ns));
        if let Err(e) = spawned {
            error!("cannot start the events thread: {e}");
        }
        Publisher { tx: Mutex::new(tx), namespace }
    }

    /// Queue `msg` for `topic` (one of containerd's `/tasks/...` topics).
    pub fn publish<M: Message>(&self, topic: &'static str, msg: &M) {
        // Message::write_to_bytes, not MessageDyn::write_to_vec_dyn: the latter asks the reflection descriptor for
        // the message name up front, which builds the descriptors of every message of the file on the heap.
        let value = match msg.write_to_bytes() {
            Ok(v) => v,
            Err(e) => {
                error!("encode event {topic}: {e}");
                return;
            }
        };
        // The type name from the topic, not from msg.descriptor_dyn(): protobuf's reflection would build the
        // descriptors of every message of the file on the heap (~0.5 MiB of RSS) for one string.
        let any = Any { type_url: type_url(topic).to_string(), value, ..Default::default() };
        let ev = Event { topic, at: now(), any };
        if let Ok(tx) = self.tx.lock() {
            if tx.send(ev).is_err() {
                warn!("events thread gone: {topic} for namespace {} dropped", self.namespace);
            }
        }
    }
}

/// containerd's type name of the event published on `topic`.
fn type_url(topic: &str) -> &'static str {
    match topic {
        "/tasks/create" => "containerd.events.TaskCreate",
        "/tasks/start" => "containerd.events.TaskStart",
        "/tasks/exit" => "containerd.events.TaskExit",
        "/tasks/delete" => "containerd.events.TaskDelete",
        "/tasks/exec-added" => "containerd.events.TaskExecAdded",
        "/tasks/exec-started" => "containerd.events.TaskExecStarted",
        "/tasks/paused" => "containerd.events.TaskPaused",
        "/tasks/resumed" => "containerd.events.TaskResumed",
        "/tasks/oom" => "containerd.events.TaskOOM",
        "/tasks/checkpointed" => "containerd.events.TaskCheckpointed",
        _ => "containerd.events.TaskUnknown",
    }
}

fn connect(address: &str) -> Option<EventsClient> {
    let fd = containerd_shim::util::connect(address).ok()?;
    Client::new(fd).ok().map(EventsClient::new)
}

fn run(rx: Receiver<Event>, address: &str, ns: &str) {
    let mut client: Option<EventsClient> = None;
    loop {
        // Events come in bursts (create, start; exit, delete): the connection (and the two threads of a ttrpc
        // client) is dropped after 2 s without one and made again for the next burst.
        let ev = match rx.recv_timeout(Duration::from_secs(2)) {
            Ok(ev) => ev,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                client = None;
                match rx.recv() {
                    Ok(ev) => ev,
                    Err(_) => return,
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
        };
        let req = ForwardRequest {
            envelope: Some(Envelope {
                timestamp: Some(ev.at.clone()).into(),
                namespace: ns.to_string(),
                topic: ev.topic.to_string(),
                event: Some(ev.any.clone()).into(),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if client.is_none() {
                client = connect(address);
            }
            if let Some(c) = &client {
                match c.forward(Context::default(), &req) {
                    Ok(_) => break,
                    Err(e) => {
                        warn!("publish {} to {address}: {e}; reconnecting", ev.topic);
                        client = None;
                    }
                }
            }
            if Instant::now() > deadline {
                error!("publish {} to {address}: containerd unreachable for 120 s, event dropped", ev.topic);
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim::protos::events::task::{TaskExit, TaskOOM};
    use containerd_shim::protos::protobuf::MessageDyn;

    #[test]
    fn type_names_match_the_messages() {
        // The names containerd's typeurl registry knows; checked against protobuf's own descriptors here (tests
        // only: the shim avoids building them).
        for (topic, name) in [
            ("/tasks/exit", TaskExit::new().descriptor_dyn().full_name().to_string()),
            ("/tasks/oom", TaskOOM::new().descriptor_dyn().full_name().to_string()),
        ] {
            assert_eq!(type_url(topic), name);
        }
        assert_eq!(type_url("/tasks/exec-started"), "containerd.events.TaskExecStarted");
    }
}
