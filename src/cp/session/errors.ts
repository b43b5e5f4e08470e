/** The session a command was sent over ended before its done or error frame came back. */
export class SessionLostError extends Error {
  override name = "SessionLostError";
  constructor(
    readonly agentId: string,
    /** Why the session ended (peer_closed, keepalive_timeout, closed, …). */
    readonly reason: string,
  ) {
    super(`the session to agent ${agentId} ended (${reason}) before the command finished`);
  }
}

/** One dial attempt that did not give a session; the dialer retries it with the backoff. */
export class DialAttemptError extends Error {
  override name = "DialAttemptError";
  constructor(
    /** A short classification (connect, handshake_timeout, hello_refused, peer_closed, …). */
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}
