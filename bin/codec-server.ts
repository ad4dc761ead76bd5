import { ConfigError, loadConfig } from '../src/config';
import { codecOf, describePayloadCodec, payloadCodecSetting } from '../src/codec/settings';
import { startCodecServer } from '../src/codec/server';
import { createLogger, lineLogger } from '../src/observability/log';
import { runMain } from '../src/run-main';

const USAGE = `usage: npm run codec-server

The codec server: decodes (and encodes) Temporal payloads for the Temporal UI and
CLI with the workers' keys, so an authorised operator reads a saga's inputs in
the UI or with \`temporal workflow show\`. A process and a port of its own
(SAGAFLOW_CODEC_HOST:SAGAFLOW_CODEC_PORT, 127.0.0.1:8888), apart from the API.

Needs SAGAFLOW_PAYLOAD_KEYS (or SAGAFLOW_PAYLOAD_KEYS_FILE) with every key still
in use, and SAGAFLOW_CODEC_TOKEN: each request carries
\`Authorization: Bearer <token>\` (401 otherwise). SAGAFLOW_CODEC_CORS_ORIGINS
lets a Temporal UI's origin call it from a browser. Every decode is logged.

  temporal workflow show -w order-<id> --detailed --codec-endpoint http://127.0.0.1:8888 --codec-auth "Bearer $SAGAFLOW_CODEC_TOKEN"

SIGTERM or SIGINT stops it, exit 0.`;

runMain(USAGE, async () => {
  const config = loadConfig();
  const setting = payloadCodecSetting(config);
  const codec = codecOf(setting);
  const problems: { variable: string; message: string }[] = [];
  if (!codec) problems.push({ variable: 'SAGAFLOW_PAYLOAD_CODEC', message: 'off: payloads are not encrypted, so there is nothing to decode' });
  if (!config.SAGAFLOW_CODEC_TOKEN) {
    problems.push({ variable: 'SAGAFLOW_CODEC_TOKEN', message: 'required: the bearer token operators present (openssl rand -base64 32)' });
  }
  if (problems.length || !codec || !config.SAGAFLOW_CODEC_TOKEN) throw new ConfigError(problems);
  const logger = createLogger({ service: 'sagaflow-codec-server', level: config.LOG_LEVEL });
  const server = await startCodecServer({
    codec,
    token: config.SAGAFLOW_CODEC_TOKEN,
    host: config.SAGAFLOW_CODEC_HOST,
    port: config.SAGAFLOW_CODEC_PORT,
    corsOrigins: config.SAGAFLOW_CODEC_CORS_ORIGINS,
    log: lineLogger(logger),
  });
  logger.info(
    { url: server.url, payloadEncryption: describePayloadCodec(setting), corsOrigins: config.SAGAFLOW_CODEC_CORS_ORIGINS ?? [] },
    'codec server listening',
  );
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await server.close();
});
