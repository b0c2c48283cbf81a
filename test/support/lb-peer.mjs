// A tiny TCP/UDP peer for the load-balancer kernel tests, run inside a
// sandbox namespace with `ip netns exec <ns> node lb-peer.mjs …`. Plain
// JavaScript: it starts fast and needs no loader.
//
//   serve <name> <tcpPort> <udpPort>   answers every TCP connection and every
//                                      UDP datagram with <name>, until killed
//   tcp <host> <port> <count>          <count> connections one after another;
//                                      prints {"<name>": n, …, "errors": {code: n}, "ms": [..]}
//   udp <host> <port> <count> <gapMs>  one connected UDP socket sending <count>
//                                      datagrams <gapMs> apart; prints {"answers": [the
//                                      answer, or an error code, in order], "ms": [..]}
import { createServer, connect } from 'node:net';
import { createSocket } from 'node:dgram';

const [mode, ...args] = process.argv.slice(2);

if (mode === 'serve') {
  const [name, tcpPort, udpPort] = args;
  createServer((sock) => sock.end(name)).listen(Number(tcpPort), '::');
  for (const type of ['udp4', 'udp6']) {
    const u = createSocket({ type, ipv6Only: type === 'udp6' });
    u.on('message', (_msg, from) => u.send(name, from.port, from.address));
    u.bind(Number(udpPort));
  }
  process.stdout.write('ready\n');
} else if (mode === 'tcp') {
  const [host, port, count] = args;
  const counts = {};
  const errors = {};
  const ms = [];
  for (let i = 0; i < Number(count); i++) {
    const started = performance.now();
    const answer = await new Promise((resolve) => {
      let data = '';
      const s = connect({ host, port: Number(port), timeout: 2000 });
      s.on('data', (d) => (data += d));
      s.on('end', () => resolve({ data }));
      s.on('timeout', () => { s.destroy(); resolve({ error: 'TIMEOUT' }); });
      s.on('error', (e) => resolve({ error: e.code }));
    });
    ms.push(Math.round(performance.now() - started));
    if (answer.error) errors[answer.error] = (errors[answer.error] ?? 0) + 1;
    else counts[answer.data] = (counts[answer.data] ?? 0) + 1;
  }
  process.stdout.write(JSON.stringify({ counts, errors, ms }) + '\n');
} else if (mode === 'udp') {
  const [host, port, count, gapMs] = args;
  const s = createSocket(host.includes(':') ? 'udp6' : 'udp4');
  await new Promise((resolve) => s.connect(Number(port), host, resolve));
  const answers = [];
  const ms = [];
  for (let i = 0; i < Number(count); i++) {
    const started = performance.now();
    const answer = await new Promise((resolve) => {
      const t = setTimeout(() => resolve('TIMEOUT'), 1000);
      s.once('message', (m) => { clearTimeout(t); resolve(m.toString()); });
      s.once('error', (e) => { clearTimeout(t); resolve(e.code); });
      s.send('hello');
    });
    answers.push(answer);
    ms.push(Math.round(performance.now() - started));
    // The test changes the backends while this waits.
    if (i < Number(count) - 1) await new Promise((r) => setTimeout(r, Number(gapMs)));
  }
  process.stdout.write(JSON.stringify({ answers, ms }) + '\n');
  s.close();
}
