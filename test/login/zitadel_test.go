package login

import (
	"context"
	"net"
	"net/http/httptest"
	"testing"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// The second provider: zitadel's example OpenID provider (its op package,
// example storage and example login page), as independent of clickgate as
// any company IdP. It knows one native (public, PKCE) client with a
// loopback redirect, and one person. Like most company IdPs it issues JWT
// access tokens (audience: the client) with the person's email.
const (
	zitadelClient   = "zitadel-cli"
	zitadelUser     = "alice"
	zitadelPassword = "alice-zitadel-pw"
)

type zitadelUsers map[string]*storage.User

func (u zitadelUsers) GetUserByID(id string) *storage.User { return u[id] }
func (u zitadelUsers) GetUserByUsername(name string) *storage.User {
	for _, x := range u {
		if x.Username == name {
			return x
		}
	}
	return nil
}
func (u zitadelUsers) ExampleClientID() string { return "unused-service" }

// zitadelIdP serves the example provider on 127.0.0.1 and returns its
// issuer URL.
func zitadelIdP(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	issuer := "http://" + l.Addr().String()
	users := zitadelUsers{"u-alice": {ID: "u-alice", Username: zitadelUser, Password: zitadelPassword,
		FirstName: "Alice", LastName: "Liddell", Email: "alice@example.com", EmailVerified: true}}
	store := &zitadelStorage{users: users, Storage: storage.NewStorageWithClients(users, map[string]*storage.Client{
		zitadelClient: storage.NativeClient(zitadelClient, "http://127.0.0.1/callback"),
	})}
	srv := httptest.NewUnstartedServer(exampleop.SetupServer(issuer, store, nil, false))
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
	})
	return issuer
}

// zitadelServer is a clickgate server that trusts only the zitadel
// provider.
func zitadelServer(t *testing.T, issuer string) string {
	t.Helper()
	return serve(t, `
server:
  listen: %[1]s
  public_url: %[2]s
token_processors:
  zitadel:
    type: oidc
    issuer: `+issuer+`
    audiences: [`+zitadelClient+`]
    username_claim: email
    required_claims: {email_verified: true}
directory:
  roles:
    common: [mcp_reader]
`)
}

// zitadelStorage is the example storage with JWT access tokens that carry
// the person's email.
type zitadelStorage struct {
	*storage.Storage
	users zitadelUsers
}

type jwtClient struct{ op.Client }

func (jwtClient) AccessTokenType() op.AccessTokenType { return op.AccessTokenTypeJWT }

func (s *zitadelStorage) GetClientByClientID(ctx context.Context, id string) (op.Client, error) {
	c, err := s.Storage.GetClientByClientID(ctx, id)
	if err != nil {
		return nil, err
	}
	return jwtClient{c}, nil
}

func (s *zitadelStorage) GetPrivateClaimsFromScopes(ctx context.Context, userID, clientID string, scopes []string) (map[string]any, error) {
	claims, err := s.Storage.GetPrivateClaimsFromScopes(ctx, userID, clientID, scopes)
	if err != nil {
		return nil, err
	}
	if claims == nil {
		claims = map[string]any{}
	}
	if u := s.users.GetUserByID(userID); u != nil {
		claims["email"] = u.Email
		claims["email_verified"] = u.EmailVerified
	}
	return claims, nil
}
