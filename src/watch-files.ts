/**
 * Watching configuration files for changes, the same way for rules.yaml and the TLS key and
 * certificate: the DIRECTORY holding each file is watched (editors, `mv`, certbot and
 * Kubernetes replace files, so a watch on the file would stay on the old inode), and when the
 * file is a symlink (`ln -s /srv/config/rules.yaml`, a ConfigMap mount, certbot's `live/`)
 * also its target's directory, so an edit of the target is seen too. Only events for the
 * files' names, their targets' names and, for symlinked files, the `..data`-style links a
 * ConfigMap swaps count: a busy neighbour file (a log next to the certificate) neither
 * triggers reloads nor postpones one. Events are debounced into one `onChange`.
 *
 * The watch follows the layout: a watched directory replaced or deleted and recreated (`mv
 * conf.new conf`, rsync, a git checkout, an Ansible deploy) or a symlink re-pointed to another
 * directory is found at the next event or within `recheckMs`; the watch is then set up again
 * on what the paths name now, and `onChange` fires. Before, the watch stayed on the old
 * directory's inode: later edits went unseen, edits of the renamed old copy reloaded.
 *
 * Failure: a directory that cannot be watched goes to `onError` (once per layout); the others
 * are still watched, and the recheck keeps looking.
 */
import { lstatSync, realpathSync, statSync, watch, type FSWatcher } from "node:fs";
import { basename, dirname } from "node:path";

export interface WatchFilesOptions {
  debounceMs: number;
  /** How often the layout (directories' identity, symlink targets) is compared; default 2 s. */
  recheckMs?: number;
  onChange: () => void;
  onError: (err: unknown) => void;
}

const RECHECK_MS = 2_000;

/** Starts watching; returns the function that stops it. */
export function watchFiles(files: readonly string[], opts: WatchFilesOptions): () => void {
  let timer: ReturnType<typeof setTimeout> | null = null;
  let stopped = false;
  const trigger = (): void => {
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = null;
      if (!stopped) opts.onChange();
    }, opts.debounceMs);
    timer.unref();
  };
  let watchers: FSWatcher[] = [];
  let layout = "";

  const arm = (): void => {
    for (const w of watchers) w.close();
    watchers = [];
    const dirs = watchedDirectories(files);
    layout = layoutOf(files, dirs);
    const symlinked = files.some(isSymlink);
    for (const [dir, names] of dirs) {
      try {
        const w = watch(dir, { persistent: false }, (_event, filename) => {
          const name = filename === null || filename === undefined ? null : String(filename);
          if (name === null || names.has(name) || (symlinked && name.startsWith(".."))) {
            trigger();
            recheck();
          }
        });
        w.on("error", () => recheck());
        watchers.push(w);
      } catch (err) {
        opts.onError(err);
      }
    }
  };

  /** The paths now name other directories or targets: watch those, and reload. */
  const recheck = (): void => {
    if (stopped || layoutOf(files, watchedDirectories(files)) === layout) return;
    arm();
    trigger();
  };

  arm();
  const poll = setInterval(recheck, opts.recheckMs ?? RECHECK_MS);
  poll.unref();
  return () => {
    stopped = true;
    clearInterval(poll);
    if (timer) clearTimeout(timer);
    for (const w of watchers) w.close();
  };
}

/** Each directory to watch, with the file names in it that matter. */
function watchedDirectories(files: readonly string[]): Map<string, Set<string>> {
  const dirs = new Map<string, Set<string>>();
  const add = (path: string): void => {
    const names = dirs.get(dirname(path)) ?? new Set<string>();
    names.add(basename(path));
    dirs.set(dirname(path), names);
  };
  for (const file of files) {
    add(file);
    const real = realPath(file);
    if (real !== null && real !== file) add(real);
  }
  return dirs;
}

/** What the watch was set up on: each directory's identity, each file's resolved target. */
function layoutOf(files: readonly string[], dirs: Map<string, Set<string>>): string {
  const parts: string[] = [];
  for (const dir of dirs.keys()) {
    try {
      const st = statSync(dir);
      parts.push(`${dir}=${st.dev}:${st.ino}`);
    } catch {
      parts.push(`${dir}=missing`);
    }
  }
  for (const file of files) parts.push(`${file}->${realPath(file) ?? "missing"}`);
  return parts.join("\n");
}

function realPath(path: string): string | null {
  try {
    return realpathSync(path);
  } catch {
    return null; // not there yet, or a dangling link: the link's own directory is still watched
  }
}

function isSymlink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}
