// HPS/1 requests handed to the runner and not answered yet, by token (the runner hands the token back with the
// answer): the connection and its generation, the request id, the opcode, the start time. A token is reused only
// after its answer.
import type { ConnectionState } from "./connection.ts";

export class RunningRequests {
  readonly connection: (ConnectionState | null)[] = [];
  /** The connection's generation when the request started; -1 once it was answered early (see answerEarly). */
  readonly generation: number[] = [];
  readonly requestId: number[] = [];
  readonly opcode: number[] = [];
  readonly startMs: number[] = [];
  /** Requests out over all connections (including ones closed meanwhile). */
  total = 0;
  private readonly free: number[] = [];

  /** Records a request about to go to the runner; returns its token. */
  open(connection: ConnectionState, opcode: number, requestId: number): number {
    const token = this.free.length > 0 ? this.free.pop()! : this.connection.length;
    this.connection[token] = connection;
    this.generation[token] = connection.generation;
    this.requestId[token] = requestId;
    this.opcode[token] = opcode;
    this.startMs[token] = performance.now();
    connection.inFlight++;
    this.total++;
    return token;
  }

  /** The runner answered `token`: frees it (the caller read its fields first). */
  release(token: number): void {
    this.connection[token] = null;
    this.free.push(token);
    this.total--;
  }

  /**
   * Calls `answer(token)` for every request of `connection` still out and marks it answered: its result, when it
   * comes, finds a generation no connection has and only frees the token. Returns how many there were.
   */
  answerEarly(connection: ConnectionState, answer: (token: number) => void): number {
    let answered = 0;
    const generation = connection.generation;
    for (let token = 0; token < this.connection.length; token++) {
      if (this.connection[token] !== connection || this.generation[token] !== generation) continue;
      this.generation[token] = -1;
      connection.inFlight--;
      answered++;
      answer(token);
    }
    return answered;
  }
}
