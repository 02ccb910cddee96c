// Creates blob containers on a local Azurite (the tests' Azure server): node create-containers.js PORT NAME...
// Uses Azurite's well-known development account; nothing here is a secret.
const { BlobServiceClient } = require('@azure/storage-blob');
const [port, ...containers] = process.argv.slice(2);
const key = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';
const url = `DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=${key};BlobEndpoint=http://127.0.0.1:${port}/devstoreaccount1;`;
(async () => {
  const service = BlobServiceClient.fromConnectionString(url);
  for (const name of containers) await service.getContainerClient(name).createIfNotExists();
})().catch((error) => { console.error(error.message); process.exit(1); });
