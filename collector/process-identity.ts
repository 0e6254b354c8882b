/**
 * Who an observed process is, for the Resource of its spans and RED metrics:
 * its service.name and, when it runs in a container, the container's id.
 *
 * service.name, in order (issue 10, "Conventions"; Beyla does the first):
 *   1. OTEL_SERVICE_NAME from its environment, else service.name in its
 *      OTEL_RESOURCE_ATTRIBUTES (what its own OpenTelemetry SDK would say);
 *   2. for an interpreter (python*, node, java, ruby, perl, php) the script or
 *      module it runs, from its command line: two Python servers are not both
 *      `python3.11` (`python3 -m http.server` -> http.server,
 *      `python3 /srv/app/server.py` -> server, `node /app/index.js` -> app,
 *      `java -jar /opt/x.jar` -> x, `java com.example.Main` -> com.example.Main);
 *   3. the executable's basename; 4. the command line's first word's basename.
 * container.id: the 64-hex id a container runtime puts in the process's cgroup
 * path (docker-<id>.scope, cri-containerd-<id>.scope, libpod-<id>.scope,
 * /docker/<id>, /kubepods/.../<id>).
 *
 * The pure functions take /proc's texts (environ and cmdline NUL-separated);
 * procIdentities() is the thin reader with its cache.
 */
import fs from 'node:fs';

export interface ProcessTexts {
  /** /proc/<pid>/environ: NUL-separated NAME=value (empty when unreadable: another user's process without CAP_SYS_PTRACE). */
  readonly environ: string;
  /** /proc/<pid>/cmdline: NUL-separated argv. */
  readonly cmdline: string;
  /** readlink /proc/<pid>/exe ('' when unreadable). */
  readonly exe: string;
  /** /proc/<pid>/cgroup. */
  readonly cgroup: string;
}

export interface ProcessIdentity {
  /** '' when nothing names it (the caller falls back to the thread's comm). */
  readonly serviceName: string;
  /** '' when the process is not in a container (as far as its cgroup path tells). */
  readonly containerId: string;
}

/** Longest service.name kept (a bound: command lines can be long). */
export const MAX_SERVICE_NAME = 255;

const basename = (p: string): string => {
  const t = p.replace(/\/+$/, '');
  const i = t.lastIndexOf('/');
  return i < 0 ? t : t.slice(i + 1);
};
const dirBasename = (p: string): string => {
  const t = p.replace(/\/+$/, '');
  const i = t.lastIndexOf('/');
  return i <= 0 ? '' : basename(t.slice(0, i));
};
const splitNul = (s: string): string[] => s.split('\0').filter((x) => x !== '');

/** The variables of an environ text, by name (the first of a repeated name wins, as getenv's does). */
export function parseEnviron(environ: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const kv of environ.split('\0')) {
    const eq = kv.indexOf('=');
    if (eq <= 0) continue;
    const k = kv.slice(0, eq);
    if (!out.has(k)) out.set(k, kv.slice(eq + 1));
  }
  return out;
}

/**
 * service.name the process gives itself: OTEL_SERVICE_NAME, else service.name
 * in OTEL_RESOURCE_ATTRIBUTES (key=value pairs, comma-separated, values
 * percent-encoded per the SDK spec); '' when neither says.
 */
export function configuredServiceName(environ: string): string {
  const env = parseEnviron(environ);
  const own = env.get('OTEL_SERVICE_NAME')?.trim();
  if (own) return own;
  for (const pair of (env.get('OTEL_RESOURCE_ATTRIBUTES') ?? '').split(',')) {
    const eq = pair.indexOf('=');
    if (eq < 0 || pair.slice(0, eq).trim() !== 'service.name') continue;
    const raw = pair.slice(eq + 1).trim();
    try {
      const v = decodeURIComponent(raw);
      if (v !== '') return v;
    } catch {
      if (raw !== '') return raw;
    }
  }
  return '';
}

type Interpreter = 'python' | 'node' | 'java' | 'ruby' | 'perl' | 'php';

/** Which interpreter an executable name is (python3.11, node, java, ruby3.2, perl5.36, php8.2, php-cli...). */
export function interpreterOf(name: string): Interpreter | null {
  if (/^python[0-9.]*$/.test(name) || /^pypy[0-9.]*$/.test(name)) return 'python';
  if (name === 'node' || name === 'nodejs') return 'node';
  if (name === 'java') return 'java';
  if (/^ruby[0-9.]*$/.test(name)) return 'ruby';
  if (/^perl[0-9.]*$/.test(name)) return 'perl';
  if (/^php[0-9.]*(?:-cli)?$/.test(name)) return 'php';
  return null;
}

/** Options of each interpreter that take the next word as their value (the script comes after). */
const OPTIONS_WITH_VALUE: Record<Interpreter, ReadonlySet<string>> = {
  python: new Set(['-W', '-X', '-Q']),
  node: new Set(['-r', '--require', '--import', '--loader', '--experimental-loader', '--env-file', '--conditions', '-C', '--title', '--inspect-port', '--max-old-space-size', '--stack-size']),
  java: new Set(['-cp', '-classpath', '--class-path', '-p', '--module-path', '--upgrade-module-path', '--add-modules', '--add-opens', '--add-exports', '--add-reads', '--patch-module', '--limit-modules', '-javaagent']),
  ruby: new Set(['-I', '-r', '-C', '-E', '-F', '-x']),
  perl: new Set(['-I', '-M', '-m', '-x']),
  php: new Set(['-c', '-d', '-z', '-t', '-S']),
};
/** Options after which the program is inline code, not a file: nothing better than the interpreter's name. */
const INLINE: Record<Interpreter, ReadonlySet<string>> = {
  python: new Set(['-c']),
  node: new Set(['-e', '--eval', '-p', '--print']),
  java: new Set([]),
  ruby: new Set(['-e']),
  perl: new Set(['-e', '-E']),
  php: new Set(['-r']),
};
const SCRIPT_EXT: Record<Interpreter, RegExp> = {
  python: /\.pyc?$/, node: /\.(?:m|c)?[jt]s$/, java: /\.jar$/, ruby: /\.rb$/, perl: /\.p[lm]$/, php: /\.php$/,
};

/** The name of a script file: its basename without the extension; an index/main/__main__ file is named by its directory. */
function scriptName(file: string, kind: Interpreter): string {
  const base = basename(file).replace(SCRIPT_EXT[kind], '');
  if (/^(?:index|main|__main__)$/.test(base)) {
    const dir = dirBasename(file);
    if (dir !== '' && dir !== '.' && dir !== '..') return dir;
  }
  return base;
}

/**
 * What an interpreter runs, from its argv (argv[0] the interpreter): the
 * module (-m), the jar or main class, else the first word that is no option:
 * the script; '' when it runs inline code or nothing can be told.
 */
export function interpretedName(argv: readonly string[], kind: Interpreter): string {
  const withValue = OPTIONS_WITH_VALUE[kind];
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i]!;
    if (INLINE[kind].has(a)) return '';
    if (kind === 'python' && a.startsWith('-m')) return a.length > 2 ? a.slice(2) : (argv[i + 1] ?? '');
    if (kind === 'python' && a.startsWith('-c')) return '';
    if (kind === 'java' && (a === '-jar' || a === '--jar')) return argv[i + 1] === undefined ? '' : scriptName(argv[i + 1]!, 'java');
    if (kind === 'java' && (a === '-m' || a === '--module')) {
      const m = argv[i + 1] ?? '';
      const slash = m.indexOf('/');
      return slash >= 0 ? m.slice(slash + 1) : m;
    }
    if (kind === 'php' && a === '-f') return argv[i + 1] === undefined ? '' : scriptName(argv[i + 1]!, 'php');
    if (a === '--') return argv[i + 1] === undefined ? '' : kind === 'java' ? argv[i + 1]! : scriptName(argv[i + 1]!, kind);
    if (withValue.has(a)) {
      i++;
      continue;
    }
    if (a.startsWith('-')) continue; // a flag, or --opt=value
    return kind === 'java' ? a : scriptName(a, kind);
  }
  return '';
}

const CONTAINER_ID = /(?:^|[/-])([0-9a-f]{64})(?:\.scope)?$/;

/** container.id from /proc/<pid>/cgroup: the last path segment that is (or ends in) a 64-hex id; '' for none. */
export function containerIdOf(cgroup: string): string {
  for (const line of cgroup.split('\n')) {
    // "hierarchy-id:controllers:path"; cgroup v2's single line is "0::/path"
    const parts = line.split(':');
    if (parts.length < 3) continue;
    const p = parts.slice(2).join(':');
    for (const seg of p.split('/').reverse()) {
      const m = CONTAINER_ID.exec(seg);
      if (m) return m[1]!;
    }
  }
  return '';
}

/** The identity of a process from its /proc texts (pure). */
export function identityOf(t: ProcessTexts): ProcessIdentity {
  const containerId = containerIdOf(t.cgroup);
  const cut = (s: string): string => (s.length > MAX_SERVICE_NAME ? s.slice(0, MAX_SERVICE_NAME) : s);
  const configured = configuredServiceName(t.environ);
  if (configured !== '') return { serviceName: cut(configured), containerId };
  const argv = splitNul(t.cmdline);
  const exeName = basename(t.exe.replace(/ \(deleted\)$/, ''));
  const kind = interpreterOf(exeName) ?? (argv[0] === undefined ? null : interpreterOf(basename(argv[0])));
  if (kind !== null) {
    const n = interpretedName(argv, kind);
    if (n !== '') return { serviceName: cut(n), containerId };
  }
  if (exeName !== '') return { serviceName: cut(exeName), containerId };
  return { serviceName: cut(argv[0] === undefined ? '' : basename(argv[0])), containerId };
}

/** Field 22 of /proc/<pid>/stat (start time in clock ticks since boot), read past the comm's closing parenthesis; null when unreadable. */
export function startTimeOf(stat: string): string | null {
  const close = stat.lastIndexOf(')');
  if (close < 0) return null;
  const fields = stat.slice(close + 2).split(' ');
  // fields[0] is field 3 (state): field 22 is fields[19]
  return fields[19] ?? null;
}

export interface ProcIdentityOptions {
  procRoot?: string;
  /** Processes remembered (default 4096): past it the oldest is forgotten. */
  max?: number;
  /** How often a remembered tgid's start time is checked again, ms (default 1000): a pid reused within it keeps the old name that long. */
  recheckMs?: number;
  now?: () => number;
}

/**
 * The /proc reader: identity by tgid, cached per (tgid, start time) with a
 * bound. A lookup costs a map read; once per recheckMs per process the start
 * time is read again, and a different one (the pid was reused) reads the
 * process anew. A process gone or unreadable gives '' (or the name it had),
 * and is looked at again after recheckMs too.
 */
export function procIdentities(o: ProcIdentityOptions = {}): (tgid: number) => ProcessIdentity {
  const root = o.procRoot ?? '/proc';
  const max = o.max ?? 4096;
  const recheckMs = o.recheckMs ?? 1000;
  const now = o.now ?? Date.now;
  const cache = new Map<number, { start: string; checked: number; id: ProcessIdentity }>();
  const read = (p: string): string => {
    try {
      return fs.readFileSync(p, 'utf8');
    } catch {
      return '';
    }
  };
  const NONE: ProcessIdentity = { serviceName: '', containerId: '' };
  return (tgid) => {
    const hit = cache.get(tgid);
    const t = now();
    if (hit !== undefined && t - hit.checked < recheckMs) return hit.id;
    const start = startTimeOf(read(`${root}/${tgid}/stat`));
    if (start === null) {
      // gone: its last records still name it, and it is looked at again only
      // after recheckMs (a busy process's last records arrive by the thousand)
      if (hit !== undefined) {
        hit.checked = t;
        return hit.id;
      }
      if (cache.size >= max) cache.delete(cache.keys().next().value!);
      cache.set(tgid, { start: '', checked: t, id: NONE });
      return NONE;
    }
    if (hit !== undefined && hit.start === start) {
      hit.checked = t;
      return hit.id;
    }
    let exe = '';
    try {
      exe = fs.readlinkSync(`${root}/${tgid}/exe`);
    } catch {
      // a kernel thread, or not ours to read
    }
    const id = identityOf({ environ: read(`${root}/${tgid}/environ`), cmdline: read(`${root}/${tgid}/cmdline`), exe, cgroup: read(`${root}/${tgid}/cgroup`) });
    cache.delete(tgid);
    if (cache.size >= max) cache.delete(cache.keys().next().value!);
    cache.set(tgid, { start, checked: t, id });
    return id;
  };
}

