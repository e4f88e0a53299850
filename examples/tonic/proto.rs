//! The example's gRPC service, `demo.Identity/WhoAmI` of `demo.proto`, written out as tonic's
//! code generator would write it, so the example needs no `protoc`.

use std::convert::Infallible;
use std::task::{Context, Poll};

use tonic::codegen::{http, Body, BoxFuture, Service, StdError};

/// The request: empty.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct WhoAmIRequest {}

/// The reply: the caller's identity, as the key layer found it.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct WhoAmIReply {
    #[prost(string, tag = "1")]
    pub(crate) principal: String,
    #[prost(string, tag = "2")]
    pub(crate) key_id: String,
    #[prost(string, repeated, tag = "3")]
    pub(crate) permissions: Vec<String>,
}

/// The method's path.
pub(crate) const WHO_AM_I: &str = "/demo.Identity/WhoAmI";

/// The server side of `demo.Identity`.
#[derive(Debug, Clone, Default)]
pub(crate) struct IdentityServer;

impl tonic::server::NamedService for IdentityServer {
    const NAME: &'static str = "demo.Identity";
}

/// `WhoAmI` itself: reads the identity the key layer put in the request's extensions.
struct WhoAmI;

impl tonic::server::UnaryService<WhoAmIRequest> for WhoAmI {
    type Response = WhoAmIReply;
    type Future = BoxFuture<tonic::Response<WhoAmIReply>, tonic::Status>;

    fn call(&mut self, request: tonic::Request<WhoAmIRequest>) -> Self::Future {
        let reply = match request.extensions().get::<tower_apikey::Identity>() {
            Some(who) => Ok(tonic::Response::new(WhoAmIReply {
                principal: who.principal().to_owned(),
                key_id: who.key_id().as_str().to_owned(),
                permissions: who.permissions().to_vec(),
            })),
            // Only when the service is mounted without the key layer in front of it.
            None => Err(tonic::Status::internal("no API key identity")),
        };
        Box::pin(async move { reply })
    }
}

impl<B> Service<http::Request<B>> for IdentityServer
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != WHO_AM_I {
            return Box::pin(async {
                Ok(tonic::Status::unimplemented("no such method").into_http())
            });
        }
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
            Ok(grpc.unary(WhoAmI, request).await)
        })
    }
}

/// Calls `WhoAmI` on `channel`, with `apikey` in the call's metadata if given.
pub(crate) async fn who_am_i(
    channel: tonic::transport::Channel,
    apikey: Option<&str>,
) -> Result<WhoAmIReply, tonic::Status> {
    let mut client = tonic::client::Grpc::new(channel);
    client
        .ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut request = tonic::Request::new(WhoAmIRequest {});
    if let Some(apikey) = apikey {
        let value = apikey.parse().map_err(|_| {
            tonic::Status::invalid_argument("the key is not a valid metadata value")
        })?;
        request.metadata_mut().insert("apikey", value);
    }
    let path = http::uri::PathAndQuery::from_static(WHO_AM_I);
    let reply = client
        .unary(request, path, tonic_prost::ProstCodec::default())
        .await?;
    Ok(reply.into_inner())
}
