//! A reference for `mqtt-bench conns`: a server that does nothing but answer CONNECT, single-threaded on
//! mio (accept, read, write CONNACK 0, keep the socket), to tell how much of a connect rate is the
//! broker's and how much is the generator's and the machine's. `BURN_US` spins that many microseconds per
//! accepted socket, to see how the rate moves with the server's work per connection.
//!
//! Run: `cargo run --release -p mqttd-bench --example connack_floor -- PORT`, then
//! `mqtt-bench conns -n 10000 --port PORT --pid PID` (figures in bench/README.md).

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

const LISTENER: Token = Token(usize::MAX);
/// CONNACK, 3.1.1, session not present, accepted.
const CONNACK: [u8; 4] = [0x20, 0x02, 0x00, 0x00];

fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).unwrap_or(1883);
    let burn = Duration::from_micros(std::env::var("BURN_US").ok().and_then(|b| b.parse().ok()).unwrap_or(0));
    let mut poll = Poll::new()?;
    let mut listener = TcpListener::bind(([127, 0, 0, 1], port).into())?;
    poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut sockets: slab::Slab<(TcpStream, bool)> = slab::Slab::new();
    let mut events = Events::with_capacity(1024);
    let mut buf = [0u8; 512];
    loop {
        poll.poll(&mut events, None)?;
        for event in events.iter() {
            if event.token() == LISTENER {
                while let Ok((mut socket, _)) = listener.accept() {
                    let _ = socket.set_nodelay(true);
                    let start = Instant::now();
                    while start.elapsed() < burn {
                        std::hint::spin_loop();
                    }
                    let entry = sockets.vacant_entry();
                    poll.registry().register(&mut socket, Token(entry.key()), Interest::READABLE)?;
                    entry.insert((socket, false));
                }
                continue;
            }
            let key = event.token().0;
            let Some((socket, answered)) = sockets.get_mut(key) else { continue };
            let closed = loop {
                match socket.read(&mut buf) {
                    Ok(0) => break true,
                    Ok(_) if !*answered => *answered = socket.write(&CONNACK).is_ok(),
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
                    Err(_) => break true,
                }
            };
            if closed {
                let (mut socket, _) = sockets.remove(key);
                poll.registry().deregister(&mut socket)?;
            }
        }
    }
}
