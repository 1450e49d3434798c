// The document root check made before serving from a directory (at start, by --check and when a reload changes http.root).
import { constants } from "node:fs";
import { access, stat } from "node:fs/promises";

/** Why `path` cannot be http.root (one line saying what to change), or null when it is a readable directory. */
export async function rootProblem(path: string): Promise<string | null> {
  try {
    const info = await stat(path);
    if (!info.isDirectory()) return `http.root "${path}" is not a directory: point http.root at a directory of files`;
    // Listing and opening files in it needs read and search (x) permission.
    await access(path, constants.R_OK | constants.X_OK);
    return null;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR")
      return `http.root "${path}" does not exist: create it or point http.root at your files`;
    if (code === "EACCES")
      return `http.root "${path}" cannot be read (permission denied): fix its permissions or run as a user who can read it`;
    throw error;
  }
}

/** Rejects, naming the problem, unless `path` is a readable directory. */
export async function requireDirectory(path: string): Promise<void> {
  const problem = await rootProblem(path);
  if (problem !== null) throw new Error(problem);
}
