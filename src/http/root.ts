// The document root check made before serving from a directory (at start and when a reload changes http.root).
import { stat } from "node:fs/promises";

/** Why `path` cannot be http.root (one line saying what to change), or null when it is a readable directory. */
export async function rootProblem(path: string): Promise<string | null> {
  try {
    const info = await stat(path);
    return info.isDirectory()
      ? null
      : `http.root "${path}" is not a directory: point http.root at a directory of files`;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return `http.root "${path}" does not exist: create it or point http.root at your files`;
    if (code === "EACCES")
      return `http.root "${path}" cannot be read (permission denied): fix its permissions or run as a user who can read it`;
    throw error;
  }
}
