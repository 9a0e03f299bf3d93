/**
 * Watching configuration files for changes, the same way for rules.yaml and the TLS key and
 * certificate: the DIRECTORY holding each file is watched (editors, `mv`, certbot and
 * Kubernetes replace files, so a watch on the file would stay on the old inode), and when the
 * file is a symlink (`ln -s /srv/config/rules.yaml`, a ConfigMap mount) also its target's
 * directory, so an edit of the target is seen too. Events are debounced into one `onChange`.
 * `only: "named"`: only events for the files' names, their targets' names and, for symlinked
 * files, the `..data`-style links a ConfigMap swaps; `only: "any"`: every event in those
 * directories (certbot renews several files at once). A spurious change costs one reload.
 * Failure: a directory that cannot be watched goes to `onError`; the others are still watched.
 */
import { lstatSync, realpathSync, watch, type FSWatcher } from "node:fs";
import { basename, dirname } from "node:path";

export interface WatchFilesOptions {
  only: "named" | "any";
  debounceMs: number;
  onChange: () => void;
  onError: (err: unknown) => void;
}

/** Starts watching; returns the function that stops it. */
export function watchFiles(files: readonly string[], opts: WatchFilesOptions): () => void {
  let timer: ReturnType<typeof setTimeout> | null = null;
  const trigger = (): void => {
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = null;
      opts.onChange();
    }, opts.debounceMs);
    timer.unref();
  };
  const symlinked = files.some(isSymlink);
  const watchers: FSWatcher[] = [];
  for (const [dir, names] of watchedDirectories(files)) {
    try {
      const w = watch(dir, { persistent: false }, (_event, filename) => {
        const name = filename === null || filename === undefined ? null : String(filename);
        if (opts.only === "any" || name === null || names.has(name) || (symlinked && name.startsWith(".."))) trigger();
      });
      w.on("error", opts.onError);
      watchers.push(w);
    } catch (err) {
      opts.onError(err);
    }
  }
  return () => {
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
    try {
      const real = realpathSync(file);
      if (real !== file) add(real);
    } catch {
      // not there yet, or a dangling link: the link's own directory is still watched
    }
  }
  return dirs;
}

function isSymlink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}
