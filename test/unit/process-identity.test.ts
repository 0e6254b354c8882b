/**
 * collector/process-identity.ts: service.name and container.id of an observed
 * process from its /proc texts (table), and the /proc reader's cache per
 * (tgid, start time) on a fake /proc tree.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { containerIdOf, identityOf, procIdentities, startTimeOf, type ProcessTexts } from '../../collector/process-identity.ts';

const argv = (...a: string[]): string => `${a.join('\0')}\0`;
const env = (...kv: string[]): string => `${kv.join('\0')}\0`;
const none: ProcessTexts = { environ: '', cmdline: '', exe: '', cgroup: '' };
const ID = 'a3f1c2d4e5b6978812345678901234567890abcdefabcdefabcdefabcdef0123';

test('process identity: service.name from the environment, the script or module, the executable (table)', () => {
  const cases: [string, Partial<ProcessTexts>, string][] = [
    ['OTEL_SERVICE_NAME wins over everything', { environ: env('PATH=/bin', 'OTEL_SERVICE_NAME=checkout'), cmdline: argv('python3', 'server.py'), exe: '/usr/bin/python3.11' }, 'checkout'],
    ['OTEL_RESOURCE_ATTRIBUTES service.name (percent-encoded)', { environ: env('OTEL_RESOURCE_ATTRIBUTES=deployment.environment=prod,service.name=cart%20api'), cmdline: argv('/srv/cart'), exe: '/srv/cart' }, 'cart api'],
    ['OTEL_SERVICE_NAME over OTEL_RESOURCE_ATTRIBUTES', { environ: env('OTEL_RESOURCE_ATTRIBUTES=service.name=a', 'OTEL_SERVICE_NAME=b') }, 'b'],
    ['empty OTEL_SERVICE_NAME is not a name', { environ: env('OTEL_SERVICE_NAME='), cmdline: argv('/usr/bin/python3', '/srv/app/server.py'), exe: '/usr/bin/python3.11' }, 'server'],
    ['python -m module', { cmdline: argv('python3', '-m', 'http.server', '8000'), exe: '/usr/bin/python3.11' }, 'http.server'],
    ['python -mmodule', { cmdline: argv('python3', '-u', '-mgrpc_server'), exe: '/usr/bin/python3.11' }, 'grpc_server'],
    ['python script path', { cmdline: argv('python3', '/srv/app/server.py'), exe: '/usr/bin/python3.11' }, 'server'],
    ['python options before the script', { cmdline: argv('/usr/bin/python3', '-u', '-W', 'ignore', '-X', 'dev', 'worker.py', '--port', '1'), exe: '/usr/bin/python3.11' }, 'worker'],
    ['python -c: the interpreter', { cmdline: argv('python3', '-c', 'print(1)'), exe: '/usr/bin/python3.11' }, 'python3.11'],
    ['python package __main__: its directory', { cmdline: argv('python3', '/srv/shop/__main__.py'), exe: '/usr/bin/python3.11' }, 'shop'],
    ['python shebang script', { cmdline: argv('/usr/bin/python3', '/usr/local/bin/gunicorn', 'app:app'), exe: '/usr/bin/python3.12' }, 'gunicorn'],
    ['node script', { cmdline: argv('node', '/app/server.mjs'), exe: '/usr/local/bin/node' }, 'server'],
    ['node index.js: its directory', { cmdline: argv('node', '/app/index.js'), exe: '/usr/local/bin/node' }, 'app'],
    ['node with --require', { cmdline: argv('node', '--require', './otel.js', '--enable-source-maps', 'dist/api.js'), exe: '/usr/bin/node' }, 'api'],
    ['node -e: the interpreter', { cmdline: argv('node', '-e', 'x'), exe: '/usr/bin/node' }, 'node'],
    ['java -jar', { cmdline: argv('java', '-Xmx1g', '-jar', '/opt/billing-1.2.jar'), exe: '/usr/lib/jvm/bin/java' }, 'billing-1.2'],
    ['java main class after -cp', { cmdline: argv('java', '-cp', 'lib/*', 'com.example.Main', 'x'), exe: '/usr/lib/jvm/bin/java' }, 'com.example.Main'],
    ['ruby script', { cmdline: argv('ruby', '-I', 'lib', 'bin/web.rb'), exe: '/usr/bin/ruby3.2' }, 'web'],
    ['perl script', { cmdline: argv('perl', '-w', 'cgi.pl'), exe: '/usr/bin/perl5.36.0' }, 'cgi'],
    ['php script', { cmdline: argv('php', '-d', 'x=1', 'artisan'), exe: '/usr/bin/php8.2' }, 'artisan'],
    ['not an interpreter: the executable', { cmdline: argv('nginx: worker process'), exe: '/usr/sbin/nginx' }, 'nginx'],
    ['deleted executable', { cmdline: argv('./api'), exe: '/srv/api (deleted)' }, 'api'],
    ['exe unreadable: argv[0]', { cmdline: argv('/usr/local/bin/dnsmasq', '-k') }, 'dnsmasq'],
    ['exe unreadable, interpreter by argv[0]', { cmdline: argv('/usr/bin/python3', 'app.py') }, 'app'],
    ['nothing readable', {}, ''],
  ];
  for (const [name, t, want] of cases) assert.equal(identityOf({ ...none, ...t }).serviceName, want, name);
});

test('process identity: container.id from the cgroup path (table)', () => {
  const cases: [string, string, string][] = [
    ['docker under systemd', `0::/system.slice/docker-${ID}.scope\n`, ID],
    ['containerd (kubernetes)', `0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-${ID}.scope\n`, ID],
    ['podman', `0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-${ID}.scope/container\n`, ID],
    ['cgroupfs docker (v1 lines)', `12:memory:/docker/${ID}\n11:cpu:/docker/${ID}\n`, ID],
    ['kubepods cgroupfs', `0::/kubepods/burstable/pod1234/${ID}\n`, ID],
    ['a host service', '0::/system.slice/ssh.service\n', ''],
    ['a user session', '0::/user.slice/user-0.slice/session-3.scope\n', ''],
    ['a short hex is no id', '0::/docker/abc123\n', ''],
    ['empty', '', ''],
  ];
  for (const [name, cgroup, want] of cases) assert.equal(containerIdOf(cgroup), want, name);
  assert.equal(identityOf({ ...none, cgroup: `0::/system.slice/docker-${ID}.scope\n`, exe: '/x' }).containerId, ID);
});

test('process identity: start time from /proc/<pid>/stat, a comm with spaces and parentheses', () => {
  const rest = 'S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 424242 20 21';
  assert.equal(startTimeOf(`123 (a) b) c) ${rest}`), '424242');
  assert.equal(startTimeOf(`7 (python3) ${rest}`), '424242');
  assert.equal(startTimeOf(''), null);
});

test('process identity: the /proc reader caches per (tgid, start time), re-reads a reused pid, stays bounded', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'rf-proc-'));
  const proc = (tgid: number, start: number, cmd: string[], environ = ''): void => {
    const d = path.join(root, String(tgid));
    fs.mkdirSync(d, { recursive: true });
    fs.writeFileSync(path.join(d, 'stat'), `${tgid} (x) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 ${start} 20\n`);
    fs.writeFileSync(path.join(d, 'cmdline'), argv(...cmd));
    fs.writeFileSync(path.join(d, 'environ'), environ);
    fs.writeFileSync(path.join(d, 'cgroup'), '0::/\n');
  };
  try {
    let clock = 0;
    const ids = procIdentities({ procRoot: root, max: 2, recheckMs: 1000, now: () => clock });
    proc(10, 100, ['/usr/bin/python3', 'a.py']);
    assert.equal(ids(10).serviceName, 'a');
    proc(10, 100, ['/usr/bin/python3', 'changed.py']); // same process (same start): the cache answers
    clock = 5000;
    assert.equal(ids(10).serviceName, 'a');
    proc(10, 200, ['/usr/bin/python3', 'b.py']); // pid reused: new start time
    assert.equal(ids(10).serviceName, 'a', 'within recheckMs the cached name stands');
    clock = 7000;
    assert.equal(ids(10).serviceName, 'b');
    proc(11, 1, ['x'], env('OTEL_SERVICE_NAME=eleven'));
    proc(12, 1, ['y']);
    assert.equal(ids(11).serviceName, 'eleven');
    assert.equal(ids(12).serviceName, 'y'); // bound 2: 10 forgotten
    fs.rmSync(path.join(root, '12'), { recursive: true });
    clock = 9000;
    assert.equal(ids(12).serviceName, 'y', 'a process gone keeps the name its last records had');
    assert.equal(ids(99).serviceName, '', 'never seen and gone');
    // A gone process is checked again once per recheckMs, not at every record:
    // its last records (thousands, from a busy process) each re-read /proc
    // before. Seen through a pid that comes back within recheckMs: the
    // answer stands until the recheck.
    proc(12, 2, ['y2']);
    proc(99, 1, ['z']);
    clock = 9500;
    assert.equal(ids(12).serviceName, 'y', 'gone, checked at 9000: not read again before 10000');
    assert.equal(ids(99).serviceName, '', 'never seen and gone at 9000: not read again before 10000');
    clock = 10_000;
    assert.equal(ids(12).serviceName, 'y2');
    assert.equal(ids(99).serviceName, 'z');
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});
