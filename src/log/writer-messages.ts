// Messages between a thread's log sinks and its log writer thread (src/log/writer-thread.ts).

/** To the writer: write these bytes to fd (acknowledged by "written"), or close fd after every earlier write. */
export type ToWriter =
  | { readonly kind: "write"; readonly sink: number; readonly fd: number; readonly bytes: Uint8Array }
  | { readonly kind: "close"; readonly sink: number; readonly fd: number };

/** From the writer, one per message received, in the same order. */
export type FromWriter =
  | { readonly kind: "written"; readonly sink: number; readonly error: string | null }
  | { readonly kind: "closed"; readonly sink: number };
