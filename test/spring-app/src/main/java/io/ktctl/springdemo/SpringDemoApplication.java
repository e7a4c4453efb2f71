package io.ktctl.springdemo;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import org.springframework.beans.factory.annotation.Value;
import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.boot.context.event.ApplicationReadyEvent;
import org.springframework.cloud.client.ServiceInstance;
import org.springframework.cloud.client.discovery.DiscoveryClient;
import org.springframework.cloud.client.loadbalancer.LoadBalanced;
import org.springframework.context.annotation.Bean;
import org.springframework.context.event.EventListener;
import org.springframework.core.env.Environment;
import org.springframework.web.bind.annotation.GetMapping;
import org.springframework.web.bind.annotation.RequestHeader;
import org.springframework.web.bind.annotation.RequestParam;
import org.springframework.web.bind.annotation.RestController;
import org.springframework.web.client.RestClient;

/**
 * What a Spring Cloud Kubernetes service does on a developer's laptop under `ktctl spring run`:
 * its greeting comes from the ConfigMap named after it, it finds {@code demo.target} with the
 * DiscoveryClient and calls every instance (pod IPs), then the service through the load balancer
 * and by its plain DNS name.
 * GET /report shows the results; GET /props?keys=a,b shows what the environment resolves.
 */
@SpringBootApplication
@RestController
public class SpringDemoApplication {

    private final DiscoveryClient discovery;
    private final RestClient.Builder balanced;
    private final Environment environment;
    private final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(3)).build();

    @Value("${greeting.message}")
    private String greeting;

    @Value("${demo.target}")
    private String target;

    public SpringDemoApplication(DiscoveryClient discovery, @LoadBalanced RestClient.Builder balanced, Environment environment) {
        this.discovery = discovery;
        this.balanced = balanced;
        this.environment = environment;
    }

    public static void main(String[] args) {
        SpringApplication.run(SpringDemoApplication.class, args);
    }

    @Bean
    @LoadBalanced
    static RestClient.Builder loadBalancedRestClientBuilder() {
        return RestClient.builder();
    }

    @GetMapping("/report")
    public Map<String, Object> report() {
        Map<String, Object> report = new LinkedHashMap<>();
        report.put("greeting", greeting);
        report.put("namespace", environment.getProperty("spring.cloud.kubernetes.client.namespace"));
        report.put("services", discovery.getServices());
        List<Map<String, Object>> instances = new ArrayList<>();
        for (ServiceInstance instance : discovery.getInstances(target)) {
            Map<String, Object> one = new LinkedHashMap<>();
            one.put("host", instance.getHost());
            one.put("port", instance.getPort());
            one.put("answer", call("http://" + instance.getHost() + ":" + instance.getPort() + "/from-spring"));
            instances.add(one);
        }
        report.put("instances", instances);
        report.put("byName", callBalanced("http://" + target + "/from-spring-by-name"));
        report.put("byDns", call("http://" + target + "/from-spring-by-dns"));
        return report;
    }

    @GetMapping("/props")
    public Map<String, String> props(@RequestParam String keys) {
        Map<String, String> values = new LinkedHashMap<>();
        for (String key : keys.split(",")) values.put(key, environment.getProperty(key));
        return values;
    }

    @GetMapping("/hello")
    public Map<String, Object> hello(@RequestHeader Map<String, String> headers) {
        return Map.of("from", "laptop", "greeting", greeting, "headers", headers);
    }

    /** The moment the first discovery call answers, measured from JVM start (for the report). */
    @EventListener(ApplicationReadyEvent.class)
    public void firstDiscovery() {
        Thread thread = new Thread(() -> {
            long deadline = System.currentTimeMillis() + 120_000;
            while (System.currentTimeMillis() < deadline) {
                try {
                    List<ServiceInstance> found = discovery.getInstances(target);
                    if (!found.isEmpty() && !call("http://" + found.get(0).getHost() + ":" + found.get(0).getPort() + "/first").startsWith("error")) {
                        System.out.println("FIRST-DISCOVERY-OK " + System.currentTimeMillis());
                        return;
                    }
                } catch (RuntimeException e) {
                    // not yet: the informers may still be syncing
                }
                try { Thread.sleep(100); } catch (InterruptedException e) { return; }
            }
            System.out.println("FIRST-DISCOVERY-FAILED");
        }, "first-discovery");
        thread.setDaemon(true);
        thread.start();
    }

    private String call(String url) {
        try {
            HttpRequest request = HttpRequest.newBuilder(URI.create(url)).timeout(Duration.ofSeconds(5)).build();
            return http.send(request, HttpResponse.BodyHandlers.ofString()).body().trim();
        } catch (Exception e) {
            return "error: " + e;
        }
    }

    private String callBalanced(String url) {
        try {
            String body = balanced.build().get().uri(url).retrieve().body(String.class);
            return body == null ? "" : body.trim();
        } catch (Exception e) {
            return "error: " + e;
        }
    }
}
