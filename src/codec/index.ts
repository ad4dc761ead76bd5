/**
 * Payload encryption: the codec every Temporal client, worker and replay of
 * sagaflow is given (AES-256-GCM, rotatable keys), its configuration, and the
 * codec server the Temporal UI and CLI decode through.
 */
export { EncryptionCodec, ENCRYPTED_ENCODING, KEY_ID_METADATA, PayloadDecryptionError } from './encryption-codec';
export { parsePayloadKeys, type PayloadKey } from './keys';
export {
  codecOf,
  dataConverterFromEnv,
  dataConverterOf,
  describePayloadCodec,
  payloadCodecSetting,
  payloadCodecSettingFromEnv,
  type PayloadCodecSetting,
} from './settings';
export { startCodecServer, type CodecServerOptions, type RunningCodecServer } from './server';
