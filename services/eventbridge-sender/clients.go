package eventbridgesender

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// sessionName names Herald's sessions in the tenant's CloudTrail.
const sessionName = "herald-eventbridge-sender"

// LoadAWSConfig loads the SDK configuration the sender's clients start
// from: credentials from the default chain (environment, shared config,
// web identity / IRSA, instance roles), endpoints from AWS_ENDPOINT_URL
// and AWS_ENDPOINT_URL_EVENTBRIDGE / _STS, conns idle connections kept per
// endpoint, and the retryer newRetryer returns.
func LoadAWSConfig(ctx context.Context, conns int) (aws.Config, error) {
	httpClient := awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
		// Calls to one regional endpoint run side by side; keep their
		// connections rather than dial again after each.
		t.MaxIdleConnsPerHost = conns
	})
	cfg, err := config.LoadDefaultConfig(ctx,
		config.WithHTTPClient(httpClient),
		config.WithRetryer(newRetryer),
	)
	if err != nil {
		return aws.Config{}, fmt.Errorf("AWS configuration: %w", err)
	}
	return cfg, nil
}

// newRetryer is the SDK retryer of every client: the standard one, with
// two changes.
//
// Its retry quota is off (ratelimit.None). By default each client has a
// token bucket that every retry draws from; one client serves every
// tenant whose bus is in its region (with Herald's own credentials), so a
// throttling storm on one bus would empty the bucket and then fail every
// tenant's calls with "retry quota exceeded" before they are even tried.
// Retries are bounded anyway: a few attempts per call here, the delivery
// schedule beyond, and the client's own backoff on throttling.
//
// Throttling is not retried by the SDK: PutEvents quotas are per account
// and region, that is per client, so every call of the client would meet
// the same answer. The batcher backs the whole client off instead, and
// the entries wait for it.
func newRetryer() aws.Retryer {
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.RateLimiter = ratelimit.None
		o.MaxBackoff = 2 * time.Second
		o.Retryables = append([]retry.IsErrorRetryable{retry.IsErrorRetryableFunc(func(err error) aws.Ternary {
			if isThrottle(err) {
				return aws.FalseTernary
			}
			return aws.UnknownTernary
		})}, o.Retryables...)
	})
}

// isThrottle reports whether err is a throttling answer.
func isThrottle(err error) bool {
	return retry.IsErrorThrottles(retry.DefaultThrottles).IsErrorThrottle(err).Bool()
}

// clientKey picks a client: a region and the credentials to put with,
// Herald's own (role empty) or a destination's assumed role.
type clientKey struct {
	region, role, externalID string
}

// clients makes the EventBridge client of each key.
type clients struct {
	aws aws.Config
}

func newClients(cfg aws.Config) *clients { return &clients{aws: cfg} }

// get returns a new client for key. With a role, its credentials come
// from STS AssumeRole (with the external id) in the bus's region, called
// with Herald's own credentials and cached until shortly before they
// expire.
func (c *clients) get(key clientKey) *eventbridge.Client {
	creds := c.aws.Credentials
	if key.role != "" {
		stsClient := sts.NewFromConfig(c.aws, func(o *sts.Options) { o.Region = key.region })
		provider := stscreds.NewAssumeRoleProvider(stsClient, key.role, func(o *stscreds.AssumeRoleOptions) {
			o.RoleSessionName = sessionName
			if key.externalID != "" {
				o.ExternalID = aws.String(key.externalID)
			}
		})
		creds = aws.NewCredentialsCache(provider, func(o *aws.CredentialsCacheOptions) {
			o.ExpiryWindow = 5 * time.Minute
		})
	}
	return eventbridge.NewFromConfig(c.aws, func(o *eventbridge.Options) {
		o.Region = key.region
		if creds != nil {
			o.Credentials = typedCredentials{creds}
		}
	})
}

// credentialsError is a failure to get the credentials a call is signed
// with, which the SDK returns only as text.
type credentialsError struct{ err error }

func (e *credentialsError) Error() string { return "credentials: " + e.err.Error() }
func (e *credentialsError) Unwrap() error { return e.err }

// typedCredentials marks the errors of a provider as credentialsError.
type typedCredentials struct{ aws.CredentialsProvider }

func (p typedCredentials) Retrieve(ctx context.Context) (aws.Credentials, error) {
	c, err := p.CredentialsProvider.Retrieve(ctx)
	if err != nil && !errors.Is(err, context.Canceled) {
		return c, &credentialsError{err}
	}
	return c, err
}
